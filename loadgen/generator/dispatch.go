package generator

import (
	"context"
	"sync"
	"time"
)

// plan is when to start orders: at a rate (open loop: on a fixed schedule,
// whatever the system's latency, so a slow system is measured rather than
// waited for) or by a number of workers that each start the next order when
// their last one ends (closed loop); until a count or a duration.
type plan struct {
	rate        float64       // orders per second; 0 for closed loop
	concurrency int           // workers (closed loop), or the in-flight cap at a rate
	count       int           // 0: no limit
	duration    time.Duration // 0: no limit
}

// pacer is the open-loop schedule: order i is due at start + i/rate.
type pacer struct {
	start    time.Time
	interval time.Duration
}

func newPacer(start time.Time, rate float64) pacer {
	return pacer{start: start, interval: time.Duration(float64(time.Second) / rate)}
}

func (p pacer) due(i int) time.Time { return p.start.Add(time.Duration(i) * p.interval) }

// dispatch calls work(ctx, i) for i = 0, 1, 2, … in goroutines as the plan
// allows, never more than p.concurrency at once, until p.count orders have
// started, p.duration has passed since the first or ctx is done; then it
// waits for the started ones to return. It returns how many started and
// how long starting them took (the window throughput is measured over).
// An order due while the in-flight cap is reached starts late, as soon as
// a slot frees: the schedule is kept, not shifted.
func dispatch(ctx context.Context, p plan, work func(ctx context.Context, i int)) (int, time.Duration) {
	start := time.Now()
	var deadline <-chan time.Time
	if p.duration > 0 {
		t := time.NewTimer(p.duration)
		defer t.Stop()
		deadline = t.C
	}
	slots := make(chan struct{}, p.concurrency)
	var wg sync.WaitGroup
	pace := newPacer(start, max(p.rate, 1))
	timer := time.NewTimer(0)
	defer timer.Stop()
	started := 0
loop:
	for p.count == 0 || started < p.count {
		if p.rate > 0 {
			if wait := time.Until(pace.due(started)); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-deadline:
					break loop
				case <-ctx.Done():
					break loop
				}
			}
		}
		select {
		case slots <- struct{}{}:
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		}
		// A deadline that passed while this order waited wins over it.
		select {
		case <-deadline:
			<-slots
			break loop
		case <-ctx.Done():
			<-slots
			break loop
		default:
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-slots }()
			work(ctx, i)
		}(started)
		started++
	}
	window := time.Since(start)
	wg.Wait()
	return started, window
}

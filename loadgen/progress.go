package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/goodgo/goodgo/loadgen/generator"
)

// progress is the live line on a terminal: a bar over the orders (with
// -count) or the time (with -duration), and the run's rate, orders in
// flight, errors and saga latency.
type progress struct {
	bar      *progressbar.ProgressBar
	count    int
	duration time.Duration
}

func newProgress(w io.Writer, count int, duration time.Duration) *progress {
	p := &progress{count: count, duration: duration}
	total := int64(count)
	if count == 0 {
		total = int64(duration / time.Second)
	}
	p.bar = progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetWidth(16),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionShowDescriptionAtLineEnd(),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionClearOnFinish(),
	)
	return p
}

// update is generator.Config.Progress.
func (p *progress) update(s generator.Snapshot) {
	p.bar.Describe(describe(s))
	if p.count > 0 {
		_ = p.bar.Set(s.Done)
	} else {
		_ = p.bar.Set(int(min(s.Elapsed, p.duration) / time.Second))
	}
}

func (p *progress) finish() {
	_ = p.bar.Finish()
	_ = p.bar.Clear()
}

// describe is the live figures of s on one line.
func describe(s generator.Snapshot) string {
	return fmt.Sprintf("%.1f/s  in flight %d  placed %d  errors %d  saga p50 %v p95 %v",
		s.Rate, s.InFlight, s.Placed, s.Errors, generator.Millis(s.SagaP50), generator.Millis(s.SagaP95))
}

// isTerminal tells whether w is a terminal (live output makes sense there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Package generator places orders through GoodGo's public gRPC API at a
// rate or a concurrency, in a mix of kinds (good, declined card, out of
// stock, hot SKU) with some client retries, follows each to its terminal
// state and summarizes what it measured: throughput, saga completion
// times and the outcomes by kind. The loadgen binary is its command line.
package generator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"

	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// gen is one run's state.
type gen struct {
	cfg    Config
	orders orderv1.OrderServiceClient
	sagas  orchestratorv1.SagaServiceClient // nil without Config.Orchestrator
	picker *picker
	rec    *recorder
	runID  string // makes the run's idempotency keys its own
}

// Run places orders as cfg says until its count or duration is reached,
// waits for every placed order to reach its terminal state (or its
// FollowTimeout) and returns the summary. When ctx ends first (Ctrl-C),
// it stops at once and returns the summary so far, Interrupted, with the
// orders in flight counted as abandoned. The error is only for a Config
// that cannot run.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return Summary{}, err
	}
	id := make([]byte, 6)
	_, _ = rand.Read(id) // never fails (crypto/rand)
	start := time.Now()
	g := &gen{
		cfg:    cfg,
		orders: orderv1.NewOrderServiceClient(cfg.Order),
		picker: newPicker(cfg.Mix),
		rec:    newRecorder(start),
		runID:  hex.EncodeToString(id),
	}
	if cfg.Orchestrator != nil {
		g.sagas = orchestratorv1.NewSagaServiceClient(cfg.Orchestrator)
	}

	stopProgress := g.progress()
	_, window := dispatch(ctx, plan{rate: cfg.Rate, concurrency: cfg.Concurrency, count: cfg.Count, duration: cfg.Duration}, g.one)
	stopProgress()

	g.rec.mu.Lock()
	outcomes := g.rec.outcomes
	g.rec.mu.Unlock()
	s := Summary{Mode: cfg.mode(), Mix: cfg.Mix.String(), Started: start, Interrupted: ctx.Err() != nil}
	return summary(s, outcomes, window, time.Since(start)), nil
}

// progress calls cfg.Progress on every tick until the returned stop,
// which calls it a last time.
func (g *gen) progress() (stop func()) {
	if g.cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(g.cfg.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case now := <-t.C:
				g.cfg.Progress(g.rec.snapshot(now))
			case <-done:
				g.cfg.Progress(g.rec.snapshot(time.Now()))
				return
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

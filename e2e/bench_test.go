package e2e

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/event"
)

var (
	benchInflight = flag.String("e2e.inflight", "8,64", "BenchmarkOrderSaga: orders in flight at once (placed, not yet CONFIRMED), a sub-benchmark per comma-separated level")
	benchEnv      = flag.String("e2e.env", "", "BenchmarkOrderSaga: extra binary settings, svc:NAME=VALUE,… (svc * for all)")
)

// BenchmarkOrderSaga measures the whole saga on this machine, everything
// running on it: the five plain (non -race) binaries, the development
// broker and the test's client in this process, PostgreSQL and Redis.
// Each iteration places one order (1 or 2 lines of plentiful SKUs, a card
// that pays) with at most N orders between PlaceOrder and CONFIRMED, in the
// sub-benchmark inflight=N for each level of -e2e.inflight (one
// environment for all): a closed loop, so the latency at a high level is
// mostly queueing (Little's law: in flight / rate), and a low level shows
// the latency of a loaded but not saturated system. The orders'
// confirmations are observed on the order topic (order.confirmed.v1, key =
// order id), not by polling the services.
//
// Metrics: sagas/s (confirmed orders over the time from the first
// PlaceOrder to the last confirmation), p50_ms, p90_ms and p99_ms of
// PlaceOrder → CONFIRMED (the confirmation's occurred-at, stamped by the
// order service in the committing transaction), place_p50_ms of the
// PlaceOrder call alone, and the CPU each process used, in percent of one
// core over the run (cpu_<process>); the machine has 2.
//
//	go test -run '^$' -bench BenchmarkOrderSaga -benchtime 3000x -count 3 ./e2e/
func BenchmarkOrderSaga(b *testing.B) {
	vars := map[string]map[string]string{}
	for _, kv := range strings.Split(*benchEnv, ",") {
		if kv == "" {
			continue
		}
		svc, setting, ok1 := strings.Cut(kv, ":")
		name, value, ok2 := strings.Cut(setting, "=")
		require.True(b, ok1 && ok2, "-e2e.env: %q is not svc:NAME=VALUE", kv)
		if vars[svc] == nil {
			vars[svc] = map[string]string{}
		}
		vars[svc][name] = value
	}
	e := NewEnv(b, envOptions{race: false, vars: vars})
	for _, sku := range plentySKUs {
		e.SetStock(b, sku, 1_000_000_000)
	}

	w := newWatcher()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	require.NoError(b, tailTopic(ctx, e.Broker.Addr(), event.TopicOrder, w.deliver))

	run := func(inflight, n int, loop func() bool) *runStats {
		st := &runStats{}
		sem := make(chan struct{}, inflight)
		var wg sync.WaitGroup
		var seq atomic.Int64
		placeOne := func() {
			// Every fourth order has two lines; the SKUs are spread so that
			// no single product row is the hot spot.
			lines := items(plentySKUs[rand.IntN(len(plentySKUs))], 1)
			if seq.Add(1)%4 == 0 {
				lines = items(plentySKUs[rand.IntN(4)], 1, plentySKUs[4+rand.IntN(4)], 2)
			}
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			defer pcancel()
			start := time.Now()
			o, err := e.PlaceOrder(pctx, lines, cardOK)
			placed := time.Now()
			if err != nil {
				st.fail(fmt.Errorf("PlaceOrder: %w", err))
				return
			}
			ev, err := w.wait(pctx, o.GetOrderId())
			if err != nil {
				st.fail(fmt.Errorf("order %s: %w", o.GetOrderId(), err))
				return
			}
			st.add(start, placed, ev)
		}
		if loop == nil {
			for range n {
				sem <- struct{}{}
				wg.Go(func() { defer func() { <-sem }(); placeOne() })
			}
		} else {
			for loop() {
				sem <- struct{}{}
				wg.Go(func() { defer func() { <-sem }(); placeOne() })
			}
		}
		wg.Wait()
		return st
	}

	// Warm-up: connections, pools, the first relay batches.
	warm := run(64, 200, nil)
	require.NoError(b, warm.err())
	// What the system burns doing nothing (pollers, leases, stats), to
	// tell the per-saga cost from the fixed one.
	idle := newCPUSampler(b, e)
	time.Sleep(2 * time.Second) // a measurement window, not a wait for a condition
	idleUse := idle.stop()

	for _, level := range strings.Split(*benchInflight, ",") {
		inflight, err := strconv.Atoi(strings.TrimSpace(level))
		require.NoError(b, err, "-e2e.inflight: %q is not a number", level)
		require.Positive(b, inflight, "-e2e.inflight")
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			measureSagas(b, e, inflight, idleUse, func() *runStats { return run(inflight, 0, b.Loop) })
		})
	}
}

// measureSagas runs one level of BenchmarkOrderSaga and reports its
// metrics; idleUse is the processes' CPU use at rest.
func measureSagas(b *testing.B, e *Env, inflight int, idleUse []cpuUse, run func() *runStats) {
	cpu := newCPUSampler(b, e)
	measured := time.Now()
	st := run()
	used := cpu.stop()
	require.NoError(b, st.err())
	require.Equal(b, b.N, len(st.lat), "every order confirmed")

	slices.Sort(st.lat)
	slices.Sort(st.place)
	q := func(v []time.Duration, p float64) float64 {
		return float64(v[min(len(v)-1, int(p*float64(len(v))))]) / float64(time.Millisecond)
	}
	wall := st.last.Sub(st.first)
	b.ReportMetric(float64(len(st.lat))/wall.Seconds(), "sagas/s")
	b.ReportMetric(q(st.lat, 0.50), "p50_ms")
	b.ReportMetric(q(st.lat, 0.90), "p90_ms")
	b.ReportMetric(q(st.lat, 0.99), "p99_ms")
	b.ReportMetric(q(st.place, 0.50), "place_p50_ms")
	for _, c := range used {
		b.ReportMetric(c.pct, "cpu_"+c.name)
	}
	b.ReportMetric(0, "ns/op") // the loop only admits orders; sagas/s is the rate
	var parts []string
	var total, idleTotal float64
	for i, c := range used {
		parts = append(parts, fmt.Sprintf("%s %.0f%% (idle %.0f%%)", c.name, c.pct, idleUse[i].pct))
		total += c.pct
		idleTotal += idleUse[i].pct
	}
	rate := float64(len(st.lat)) / wall.Seconds()
	b.ReportMetric((total-idleTotal)*10/rate, "cpu_ms/saga")
	b.Logf("%d sagas in %s with %d in flight; CPU in %% of one core (the machine has %d): %s; "+
		"total %.0f%%, idle %.0f%%: %.1f ms of CPU per saga; load average %s\nstages: %s",
		len(st.lat), wall.Round(time.Millisecond), inflight, runtime.NumCPU(), strings.Join(parts, ", "),
		total, idleTotal, (total-idleTotal)*10/rate, loadavg(), stageBreakdown(b, e, measured))
}

// runStats collects the latencies of one run.
type runStats struct {
	mu          sync.Mutex
	lat, place  []time.Duration
	first, last time.Time
	errs        []error
}

func (s *runStats) add(start, placed time.Time, confirmed kafkaEvent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lat = append(s.lat, confirmed.OccurredAt.Sub(start))
	s.place = append(s.place, placed.Sub(start))
	if s.first.IsZero() || start.Before(s.first) {
		s.first = start
	}
	if confirmed.OccurredAt.After(s.last) {
		s.last = confirmed.OccurredAt
	}
}

func (s *runStats) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func (s *runStats) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d orders failed, first: %w", len(s.errs), s.errs[0])
}

// watcher hands the order topic's outcome events to the goroutine waiting
// for that order, including one that arrives before anybody waits.
type watcher struct {
	mu      sync.Mutex
	waiting map[string]chan kafkaEvent
	early   map[string]kafkaEvent
	broken  error
}

func newWatcher() *watcher {
	return &watcher{waiting: map[string]chan kafkaEvent{}, early: map[string]kafkaEvent{}}
}

func (w *watcher) deliver(ev kafkaEvent) {
	if ev.Offset < 0 {
		w.mu.Lock()
		w.broken = fmt.Errorf("order topic reader: %s", ev.ID)
		for _, c := range w.waiting {
			close(c)
		}
		w.waiting = map[string]chan kafkaEvent{}
		w.mu.Unlock()
		return
	}
	if ev.Type != event.OrderConfirmed && ev.Type != event.OrderCancelled {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.waiting[ev.Key]; ok {
		delete(w.waiting, ev.Key)
		c <- ev
		return
	}
	w.early[ev.Key] = ev
}

// wait returns order id's order.confirmed.v1 event; a cancellation is an
// error.
func (w *watcher) wait(ctx context.Context, id string) (kafkaEvent, error) {
	w.mu.Lock()
	if w.broken != nil {
		w.mu.Unlock()
		return kafkaEvent{}, w.broken
	}
	ev, ok := w.early[id]
	var c chan kafkaEvent
	if ok {
		delete(w.early, id)
	} else {
		c = make(chan kafkaEvent, 1)
		w.waiting[id] = c
	}
	w.mu.Unlock()
	if !ok {
		select {
		case ev, ok = <-c:
			if !ok {
				return kafkaEvent{}, w.broken
			}
		case <-ctx.Done():
			return kafkaEvent{}, fmt.Errorf("no outcome event: %w", ctx.Err())
		}
	}
	if ev.Type != event.OrderConfirmed {
		return ev, fmt.Errorf("%s instead of %s", ev.Type, event.OrderConfirmed)
	}
	return ev, nil
}

// cpuSampler measures the CPU time processes use between its creation and
// stop, from /proc/<pid>/stat (utime + stime).
type cpuSampler struct {
	start  time.Time
	groups []cpuGroup
}

type cpuGroup struct {
	name  string
	pids  func() []int
	begin map[int]float64
}

type cpuUse struct {
	name string
	pct  float64
}

func newCPUSampler(tb testing.TB, e *Env) *cpuSampler {
	one := func(pid int) func() []int { return func() []int { return []int{pid} } }
	s := &cpuSampler{start: time.Now()}
	for _, svc := range Services {
		s.groups = append(s.groups, cpuGroup{name: strings.ReplaceAll(svc, "-", "_"), pids: one(e.Proc(svc).Pid())})
	}
	s.groups = append(s.groups,
		// This process: the development broker and the benchmark's client.
		cpuGroup{name: "broker_and_client", pids: one(os.Getpid())},
		// Every PostgreSQL process (backends, WAL writer, checkpointer…),
		// other users' included: the machine's database is shared.
		cpuGroup{name: "postgres", pids: func() []int { return pidsNamed("postgres") }},
		cpuGroup{name: "redis", pids: func() []int { return pidsNamed("redis-server") }},
	)
	for i := range s.groups {
		s.groups[i].begin = cpuTimes(s.groups[i].pids())
	}
	return s
}

// stop returns each group's CPU use since the start, in percent of one
// core, and the machine's total ("all", every process).
func (s *cpuSampler) stop() []cpuUse {
	wall := time.Since(s.start).Seconds()
	var out []cpuUse
	for _, g := range s.groups {
		end := cpuTimes(g.pids())
		var used float64
		for pid, t := range end {
			used += t - g.begin[pid] // a process born meanwhile counts from 0
		}
		out = append(out, cpuUse{name: g.name, pct: 100 * used / wall})
	}
	return out
}

// clockTicks is USER_HZ, 100 on Linux.
const clockTicks = 100

// cpuTimes returns utime + stime in seconds of each pid.
func cpuTimes(pids []int) map[int]float64 {
	out := map[int]float64{}
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			continue
		}
		// The fields after the ")" that ends the command name: state is
		// field 3, utime 14, stime 15.
		rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
		f := strings.Fields(rest)
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		out[pid] = (u + st) / clockTicks
	}
	return out
}

// pidsNamed lists the processes whose command name is name.
func pidsNamed(name string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, d := range entries {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile(filepath.Join("/proc", d.Name(), "comm"))
		if err == nil && strings.TrimSpace(string(comm)) == name {
			out = append(out, pid)
		}
	}
	return out
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}

// stageBreakdown reads, for the orders placed since since, when each stage
// of their saga happened (each service's own timestamps, one clock) and
// logs the medians and 99th percentiles of:
// placed → order.created published by the relay → saga created by the
// orchestrator's consumer → saga ended (payment, inventory, confirm).
func stageBreakdown(tb testing.TB, e *Env, since time.Time) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type times struct{ placed, published, sagaStart, sagaEnd time.Time }
	m := map[string]*times{}
	rows, err := e.DB[svcOrder].Query(ctx, `SELECT o.id::text, o.created_at, x.published_at FROM orders o
		JOIN outbox x ON x.aggregate_id = o.id::text AND x.event_type = 'order.created.v1'
		WHERE o.created_at >= $1 AND x.published_at IS NOT NULL`, since)
	require.NoError(tb, err)
	for rows.Next() {
		t := &times{}
		var id string
		require.NoError(tb, rows.Scan(&id, &t.placed, &t.published))
		m[id] = t
	}
	require.NoError(tb, rows.Err())
	rows, err = e.DB[svcOrchestrator].Query(ctx, `SELECT correlation_id, created_at, ended_at FROM sagas
		WHERE created_at >= $1 AND ended_at IS NOT NULL`, since)
	require.NoError(tb, err)
	for rows.Next() {
		var id string
		var start, end time.Time
		require.NoError(tb, rows.Scan(&id, &start, &end))
		if t := m[id]; t != nil {
			t.sagaStart, t.sagaEnd = start, end
		}
	}
	require.NoError(tb, rows.Err())
	var relay, consume, saga []time.Duration
	for _, t := range m {
		if t.sagaStart.IsZero() {
			continue
		}
		relay = append(relay, t.published.Sub(t.placed))
		consume = append(consume, t.sagaStart.Sub(t.published))
		saga = append(saga, t.sagaEnd.Sub(t.sagaStart))
	}
	f := func(name string, v []time.Duration) string {
		if len(v) == 0 {
			return name + " -"
		}
		slices.Sort(v)
		return fmt.Sprintf("%s p50 %s p99 %s", name, v[len(v)/2].Round(100*time.Microsecond), v[len(v)*99/100].Round(100*time.Microsecond))
	}
	return strings.Join([]string{f("placed→created published", relay), f("published→saga started", consume), f("saga started→ended", saga)}, "; ")
}

package e2e

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
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
	"github.com/goodgo/goodgo/platform/pgtest"
)

var (
	benchInflight = flag.String("e2e.inflight", "8,64", "BenchmarkOrderSaga: orders in flight at once (placed, not yet CONFIRMED), a sub-benchmark per comma-separated level")
	benchEnv      = flag.String("e2e.env", "", "BenchmarkOrderSaga: extra binary settings, svc:NAME=VALUE,… (svc * for all)")
	benchProfile  = flag.String("e2e.profile", "", "BenchmarkOrderSaga: a directory for each binary's CPU, block and mutex profiles taken during every level (OPS_PPROF on)")
	benchProfSecs = flag.Int("e2e.profile.seconds", 8, "BenchmarkOrderSaga: length of each -e2e.profile window, from each level's start")
	benchStmts    = flag.Bool("e2e.statements", false, "BenchmarkOrderSaga: run on a private PostgreSQL with pg_stat_statements loaded (durable commits, TLS) and log each level's costliest statements per saga")
)

// statementSettings make the private server of -e2e.statements load
// pg_stat_statements and commit as durably as the shared one (the private
// server's defaults turn fsync off for the fault tests).
var statementSettings = []string{
	"shared_preload_libraries = 'pg_stat_statements'",
	"pg_stat_statements.max = 10000",
	"pg_stat_statements.track_planning = on",
	"fsync = on",
	"full_page_writes = on",
	"shared_buffers = 128MB",
}

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
// PlaceOrder call alone, the CPU each process used, in percent of one
// core over the run (cpu_<process>; postgres: the backends of this
// environment's databases); the machine has 2, and cpu_ms/saga, their sum
// less what the idle system uses, per saga. commits/saga, inserts/saga and
// updates/saga count the four databases' transactions (read-only ones
// included: a statement outside a transaction is one) and row writes
// (pg_stat_database, less the idle rate); the log breaks them down by
// database and table. -e2e.profile=DIR saves each binary's CPU, block and
// mutex profiles of each level (go tool pprof DIR/inflight=64-order.cpu.pb.gz);
// -e2e.statements runs the databases on a private PostgreSQL (TLS, durable
// commits, pg_stat_statements loaded) and logs the costliest statements of
// each level per saga (run with -v: the log is long).
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
	if *benchProfile != "" {
		if vars["*"] == nil {
			vars["*"] = map[string]string{}
		}
		vars["*"]["OPS_PPROF"] = "true"
		require.NoError(b, os.MkdirAll(*benchProfile, 0o750))
	}
	opts := envOptions{race: false, vars: vars}
	if *benchStmts {
		opts.privatePostgres, opts.pgSettings = true, statementSettings
	}
	e := NewEnv(b, opts)
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
	// The warm-up's statistics reach pg_stat_database up to 10 s late
	// (see measureSagas): let them, or they count as idle activity.
	time.Sleep(11 * time.Second) // the statistics' flush interval, not a wait for a condition
	idle := newCPUSampler(b, e)
	idleDB := snapshotDB(b, e)
	idleStart := time.Now()
	time.Sleep(2 * time.Second) // a measurement window, not a wait for a condition
	idleUse := idle.stop()
	idleRate := snapshotDB(b, e).since(idleDB).per(time.Since(idleStart).Seconds())

	for _, level := range strings.Split(*benchInflight, ",") {
		inflight, err := strconv.Atoi(strings.TrimSpace(level))
		require.NoError(b, err, "-e2e.inflight: %q is not a number", level)
		require.Positive(b, inflight, "-e2e.inflight")
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			measureSagas(b, e, inflight, idleUse, idleRate, func() *runStats { return run(inflight, 0, b.Loop) })
		})
	}
}

// measureSagas runs one level of BenchmarkOrderSaga and reports its
// metrics; idleUse is the processes' CPU use at rest, idleDB the
// databases' activity per second at rest.
func measureSagas(b *testing.B, e *Env, inflight int, idleUse []cpuUse, idleDB dbStats, run func() *runStats) {
	db := snapshotDB(b, e)
	cpu := newCPUSampler(b, e)
	measured := time.Now()
	profiled := startProfiles(b, e, fmt.Sprintf("inflight=%d", inflight))
	statements := startStatements(b, e)
	st := run()
	used := cpu.stop()
	profiled()
	statements(len(st.lat))
	// PostgreSQL's statistics reach pg_stat_database when a backend
	// commits (at most once a second) or has been idle for 10 s: wait
	// for the last ones, then take off what the idle system did meanwhile.
	time.Sleep(11 * time.Second) // the statistics' flush interval, not a wait for a condition
	dbUsed := snapshotDB(b, e).since(db).minus(idleDB.scale(time.Since(measured).Seconds()))
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
	perSaga := dbUsed.per(float64(len(st.lat)))
	all := perSaga.total()
	b.ReportMetric(all.commits, "commits/saga")
	b.ReportMetric(all.inserts, "inserts/saga")
	b.ReportMetric(all.updates, "updates/saga")
	b.Logf("%d sagas in %s with %d in flight; CPU in %% of one core (the machine has %d): %s; "+
		"total %.0f%%, idle %.0f%%: %.1f ms of CPU per saga; load average %s\nstages: %s\nper saga: %s",
		len(st.lat), wall.Round(time.Millisecond), inflight, runtime.NumCPU(), strings.Join(parts, ", "),
		total, idleTotal, (total-idleTotal)*10/rate, loadavg(), stageBreakdown(b, e, measured), perSaga)
}

// dbCounts are one database's (or table's) counters from pg_stat_database
// and pg_stat_user_tables.
type dbCounts struct{ commits, inserts, updates, deletes float64 }

// dbStats are the counters of each service's database ("svc") and of each
// of its tables ("svc.table").
type dbStats map[string]dbCounts

// snapshotDB reads the counters of the environment's databases.
func snapshotDB(tb testing.TB, e *Env) dbStats {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := dbStats{}
	for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator} {
		pool := e.DB[svc]
		var c dbCounts
		require.NoError(tb, pool.QueryRow(ctx, `SELECT xact_commit, tup_inserted, tup_updated, tup_deleted
			FROM pg_stat_database WHERE datname = current_database()`).Scan(&c.commits, &c.inserts, &c.updates, &c.deletes))
		out[svc] = c
		rows, err := pool.Query(ctx, `SELECT relname, n_tup_ins, n_tup_upd, n_tup_del FROM pg_stat_user_tables`)
		require.NoError(tb, err)
		for rows.Next() {
			var name string
			var t dbCounts
			require.NoError(tb, rows.Scan(&name, &t.inserts, &t.updates, &t.deletes))
			out[svc+"."+name] = t
		}
		require.NoError(tb, rows.Err())
	}
	return out
}

func (s dbStats) apply(o dbStats, f func(a, b float64) float64) dbStats {
	out := dbStats{}
	for k, a := range s {
		b := o[k]
		out[k] = dbCounts{f(a.commits, b.commits), f(a.inserts, b.inserts), f(a.updates, b.updates), f(a.deletes, b.deletes)}
	}
	return out
}

func (s dbStats) since(o dbStats) dbStats {
	return s.apply(o, func(a, b float64) float64 { return a - b })
}
func (s dbStats) minus(o dbStats) dbStats {
	return s.apply(o, func(a, b float64) float64 { return max(0, a-b) })
}
func (s dbStats) scale(k float64) dbStats {
	return s.apply(nil, func(a, _ float64) float64 { return a * k })
}
func (s dbStats) per(n float64) dbStats { return s.scale(1 / n) }

// total sums the databases (not the tables).
func (s dbStats) total() dbCounts {
	var t dbCounts
	for k, c := range s {
		if !strings.Contains(k, ".") {
			t.commits += c.commits
			t.inserts += c.inserts
			t.updates += c.updates
			t.deletes += c.deletes
		}
	}
	return t
}

// String lists each database's commits/inserts/updates/deletes and its
// tables that changed.
func (s dbStats) String() string {
	var parts []string
	for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator} {
		c := s[svc]
		var tables []string
		for k, t := range s {
			if name, ok := strings.CutPrefix(k, svc+"."); ok && t.inserts+t.updates+t.deletes >= 0.05 {
				tables = append(tables, fmt.Sprintf("%s %.2f/%.2f/%.2f", name, t.inserts, t.updates, t.deletes))
			}
		}
		slices.Sort(tables)
		parts = append(parts, fmt.Sprintf("%s: %.2f commits, %.2f ins, %.2f upd, %.2f del (%s)",
			svc, c.commits, c.inserts, c.updates, c.deletes, strings.Join(tables, ", ")))
	}
	return strings.Join(parts, "; ")
}

// startStatements, with -e2e.statements, empties pg_stat_statements; the
// function returned logs the statements of the environment's databases
// that took the most execution time, per saga: calls, rows, milliseconds
// (COMMIT's include waiting for the WAL flush).
func startStatements(tb testing.TB, e *Env) func(sagas int) {
	if !*benchStmts {
		return func(int) {}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool := e.DB[svcOrchestrator] // as the private server's superuser
	_, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	require.NoError(tb, err)
	_, err = pool.Exec(ctx, `SELECT pg_stat_statements_reset()`)
	require.NoError(tb, err)
	return func(sagas int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rows, err := pool.Query(ctx, `SELECT d.datname, s.query, s.calls, s.rows, s.total_exec_time, s.plans, s.total_plan_time,
				sum(s.total_exec_time) OVER (), sum(s.calls) OVER (), sum(s.total_plan_time) OVER ()
			FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
			WHERE d.datname LIKE $1 ORDER BY s.total_exec_time + s.total_plan_time DESC LIMIT 40`,
			pgtest.Prefix+"e2e_%")
		require.NoError(tb, err)
		n := float64(sagas)
		var lines []string
		var allMS, allCalls, allPlanMS float64
		for rows.Next() {
			var db, query string
			var calls, nrows, plans int64
			var ms, planMS float64
			require.NoError(tb, rows.Scan(&db, &query, &calls, &nrows, &ms, &plans, &planMS, &allMS, &allCalls, &allPlanMS))
			_, svc, _ := strings.Cut(db, "_e2e_")
			_, svc, _ = strings.Cut(svc, "_") // the environment's suffix
			query = strings.Join(strings.Fields(query), " ")
			if len(query) > 110 {
				query = query[:110] + "…"
			}
			lines = append(lines, fmt.Sprintf("%6.2f ms %5.2f calls %5.2f rows %5.3f ms %5.2f plans  %-14s %s",
				ms/n, float64(calls)/n, float64(nrows)/n, planMS/n, float64(plans)/n, svc, query))
		}
		require.NoError(tb, rows.Err())
		tb.Logf("statements per saga: %.1f calls, %.2f ms of execution and %.2f ms of planning in all; the costliest (execution, calls, rows, planning, plans):\n%s",
			allCalls/n, allMS/n, allPlanMS/n, strings.Join(lines, "\n"))
	}
}

// startProfiles, with -e2e.profile, takes a CPU, a block and a mutex
// profile of every binary over the next -e2e.profile.seconds, into
// <dir>/<level>-<binary>.<kind>.pb.gz; the function returned waits for
// them. A profile that fails is logged, not fatal: it is a measuring aid.
func startProfiles(tb testing.TB, e *Env, level string) func() {
	if *benchProfile == "" {
		return func() {}
	}
	var wg sync.WaitGroup
	secs := strconv.Itoa(*benchProfSecs)
	for _, svc := range Services {
		for kind, path := range map[string]string{"cpu": "profile", "block": "block", "mutex": "mutex"} {
			wg.Go(func() {
				url := "http://" + e.HTTPAddr(svc) + "/debug/pprof/" + path + "?seconds=" + secs
				file := filepath.Join(*benchProfile, level+"-"+svc+"."+kind+".pb.gz")
				if err := fetchTo(url, file, time.Duration(*benchProfSecs+30)*time.Second); err != nil {
					tb.Logf("profile %s: %v", file, err)
				}
			})
		}
	}
	return wg.Wait
}

func fetchTo(url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
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
	tb.Helper()
	one := func(pid int) func() []int { return func() []int { return []int{pid} } }
	s := &cpuSampler{start: time.Now()}
	for _, svc := range Services {
		s.groups = append(s.groups, cpuGroup{name: strings.ReplaceAll(svc, "-", "_"), pids: one(e.Proc(svc).Pid())})
	}
	s.groups = append(s.groups,
		// This process: the development broker and the benchmark's client.
		cpuGroup{name: "broker_and_client", pids: one(os.Getpid())},
		// The PostgreSQL backends serving this environment's databases:
		// the server is shared with other tests, whose backends would
		// count otherwise. The WAL writer, checkpointer and other
		// server-wide processes are left out (a few percent).
		cpuGroup{name: "postgres", pids: func() []int { return backendsOf(tb, e) }},
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

// backendsOf lists the PostgreSQL backends connected to e's databases.
func backendsOf(tb testing.TB, e *Env) []int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var names []string
	for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator} {
		names = append(names, e.DB[svc].Config().ConnConfig.Database)
	}
	rows, err := e.DB[svcOrder].Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = ANY($1)`, names)
	require.NoError(tb, err)
	defer rows.Close()
	var out []int
	for rows.Next() {
		var pid int
		require.NoError(tb, rows.Scan(&pid))
		out = append(out, pid)
	}
	require.NoError(tb, rows.Err())
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

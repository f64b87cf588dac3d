package e2e

import (
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// faultScenario is one row of the fault matrix: inject runs while the load
// generator places orders, injects its faults and returns how many, and
// when the last one ended.
type faultScenario struct {
	name string
	// short scenarios also run in `make e2e`; the others only under
	// `make chaos` (E2E_CHAOS=1).
	short bool
	opts  envOptions
	// seconds of load at faultRate: the faults fall inside it, with load
	// before and after.
	seconds int
	inject  func(t *testing.T, e *Env, rng *rand.Rand) (faults int, ended time.Time)
}

// faultOutage is how long each network fault and Redis outage lasts: a
// third of the saga deadline.
const faultOutage = 10 * time.Second

// peers are the services the orchestrator calls, each behind a proxy of
// envOptions.proxies.
var peers = []string{svcOrder, svcPayment, svcInventory}

// faultScenarios are issue 10's faults besides the crash matrix's
// failpoints: random kills, network faults between the orchestrator and
// each service it calls and between Kafka's clients and the broker, Redis
// lost, PostgreSQL crashed.
var faultScenarios = []faultScenario{
	{name: "kill/one-at-a-time", seconds: 25, inject: func(t *testing.T, e *Env, rng *rand.Rand) (int, time.Time) {
		return randomKills(t, e, rng, 4, 1), time.Now()
	}},
	{name: "kill/two-at-once", seconds: 20, inject: func(t *testing.T, e *Env, rng *rand.Rand) (int, time.Time) {
		return randomKills(t, e, rng, 3, 2), time.Now()
	}},
	{name: "net/latency-250ms", opts: envOptions{proxies: true}, seconds: 14, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		return hold(e, faultOutage, func(px proxyFault) { px.Latency(250 * time.Millisecond) }, func(px proxyFault) { px.Latency(0) }, append(peers, proxyBroker)...)
	}},
	{name: "net/resets", opts: envOptions{proxies: true}, seconds: 14, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		n := 0
		for end := time.Now().Add(faultOutage); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
			for _, name := range append(peers, proxyBroker) {
				e.Proxy[name].Reset()
				n++
			}
		}
		return n, time.Now()
	}},
	{name: "net/timeouts-peers", opts: envOptions{proxies: true}, seconds: 14, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		return hold(e, faultOutage, func(px proxyFault) { px.Stall() }, func(px proxyFault) { px.Unstall() }, peers...)
	}},
	{name: "net/cut-peers", opts: envOptions{proxies: true}, seconds: 14, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		return hold(e, faultOutage, func(px proxyFault) { px.Cut() }, func(px proxyFault) { px.Restore() }, peers...)
	}},
	// Payment out of the orchestrator's reach for two thirds of the saga
	// deadline, the orders placed in the first 6 s of it waiting: a step
	// is retried until the deadline, not for a count of attempts (12
	// attempts, about 15 s, before issue 10: good orders were cancelled).
	{name: "net/cut-payment-20s", short: true, opts: envOptions{proxies: true}, seconds: 8, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		return hold(e, 20*time.Second, func(px proxyFault) { px.Cut() }, func(px proxyFault) { px.Restore() }, svcPayment)
	}},
	{name: "net/cut-broker", opts: envOptions{proxies: true}, seconds: 14, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		return hold(e, faultOutage, func(px proxyFault) { px.Cut() }, func(px proxyFault) { px.Restore() }, proxyBroker)
	}},
	{name: "redis/down-then-empty", short: true, opts: envOptions{privateRedis: true}, seconds: 14, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		e.Redis.Stop()
		time.Sleep(faultOutage) // the outage itself
		e.Redis.Start()
		return 1, time.Now()
	}},
	{name: "postgres/crash-restart", opts: envOptions{privatePostgres: true}, seconds: 10, inject: func(t *testing.T, e *Env, _ *rand.Rand) (int, time.Time) {
		e.PG.Crash(t)
		time.Sleep(3 * time.Second) // down a while, as a server restarting on a busy host
		e.PG.Start(t)
		return 1, time.Now()
	}},
}

// proxyFault is the part of tcpproxy.Proxy a fault uses.
type proxyFault interface {
	Cut()
	Restore()
	Latency(time.Duration)
	Stall()
	Unstall()
}

// hold applies a fault to the named proxies, keeps it for d and undoes it;
// it returns the faults injected and when they ended.
func hold(e *Env, d time.Duration, apply, undo func(proxyFault), names ...string) (int, time.Time) {
	for _, n := range names {
		apply(e.Proxy[n])
	}
	time.Sleep(d) // the fault itself
	for _, n := range names {
		undo(e.Proxy[n])
	}
	return len(names), time.Now()
}

// randomKills runs rounds of: wait 0.5–1.5 s, SIGKILL n binaries chosen at
// random, wait 2–5 s, restart them. It returns the kills.
func randomKills(t *testing.T, e *Env, rng *rand.Rand, rounds, n int) int {
	kills := 0
	for range rounds {
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		victims := make([]string, 0, n)
		for _, i := range rng.Perm(len(Services))[:n] {
			victims = append(victims, Services[i])
		}
		for _, v := range victims {
			e.Kill(v)
			kills++
		}
		down := time.Duration(2000+rng.IntN(3000)) * time.Millisecond
		t.Logf("killed %v; restarting in %v", victims, down)
		time.Sleep(down) // the outage itself
		var wg sync.WaitGroup
		for _, v := range victims {
			wg.Go(func() { e.Restart(v) })
		}
		wg.Wait()
	}
	return kills
}

// TestFaultMatrix runs each fault scenario in an environment of its own,
// under load from the generator, and checks that the system recovers with
// nothing lost, doubled or wrongly cancelled (load.wait: every order
// terminal in the status its kind is owed, one saga each, ended, the
// auditor's invariants and the event checks). Random choices come from
// E2E_SEED when set, else from the clock; the seed is logged to replay a
// run. The parent test logs one line per scenario (faultTable).
//
// `make e2e` runs the short subset (payment cut off for 20 s, Redis down
// for 10 s and back empty); E2E_CHAOS=1 (`make chaos`) runs every scenario.
func TestFaultMatrix(t *testing.T) {
	chaos := os.Getenv("E2E_CHAOS") != ""
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "E2E_SEED")
		seed = v
	}
	t.Logf("E2E_SEED=%d", seed)
	var records []faultRecord
	for i, sc := range faultScenarios {
		t.Run(sc.name, func(t *testing.T) {
			if !chaos && !sc.short {
				t.Skip("only under make chaos (E2E_CHAOS=1)")
			}
			records = append(records, runFault(t, sc, rand.New(rand.NewPCG(seed, uint64(i)))))
		})
	}
	t.Log(faultTable("fault matrix", records))
}

func runFault(t *testing.T, sc faultScenario, rng *rand.Rand) faultRecord {
	start := time.Now()
	opts := sc.opts
	opts.race = true
	e := NewEnv(t, opts)
	count := sc.seconds * faultRate
	l := startLoad(t, e, count)

	time.Sleep(2 * time.Second) // orders in flight before the first fault
	faults, ended := sc.inject(t, e, rng)
	// Serving again: every binary ready.
	for _, s := range Services {
		e.waitReady(s, e.Addr(s), e.HTTPAddr(s))
	}
	recovered := time.Since(ended)

	byStatus := l.wait(t, e)
	r := faultRecord{
		scenario: sc.name, placed: l.sum.Placed, faults: faults, redeliveries: e.redeliveries(t),
		recover: recovered, drain: l.ended.Sub(ended), took: time.Since(start),
	}
	t.Logf("%s: %d orders placed (%v), %d faults injected, 0 violations, %d Kafka redeliveries; every binary ready %s and every order terminal %s after the last fault",
		sc.name, r.placed, byStatus, r.faults, r.redeliveries, r.recover.Round(time.Millisecond), r.drain.Round(time.Millisecond))
	return r
}

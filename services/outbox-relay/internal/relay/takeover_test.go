package relay_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// publisherSwitch cuts or stalls one replica's publishers, leaving the
// broker (and the other replicas) alone.
type publisherSwitch struct {
	// cut makes every Publish fail as an unreachable broker does.
	cut atomic.Bool
	// blocked counts the Publish calls waiting at a closed gate.
	blocked atomic.Int64

	mu   sync.Mutex
	gate chan struct{} // nil: open
}

// close makes Publish wait until open; open releases the waiting calls.
func (s *publisherSwitch) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gate = make(chan struct{})
}

func (s *publisherSwitch) open() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate != nil {
		close(s.gate)
		s.gate = nil
	}
}

func (s *publisherSwitch) wrap(p relay.Publisher) relay.Publisher { return &switchedPublisher{p, s} }

// probe answers like Kafka.Ping through the switch.
func (s *publisherSwitch) probe(context.Context) error {
	if s.cut.Load() {
		return errRefused
	}
	return nil
}

var errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

type switchedPublisher struct {
	relay.Publisher
	s *publisherSwitch
}

func (p *switchedPublisher) Publish(ctx context.Context, msgs []kafka.Message) error {
	if p.s.cut.Load() {
		return errRefused
	}
	p.s.mu.Lock()
	gate := p.s.gate
	p.s.mu.Unlock()
	if gate != nil {
		p.s.blocked.Add(1)
		<-gate
		p.s.blocked.Add(-1)
	}
	return p.Publisher.Publish(ctx, msgs)
}

// lanesByOwner counts the lanes each replica leases.
func lanesByOwner(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	return queryMap[string, int](t, pool, "SELECT owner, count(*) FROM outbox_lanes WHERE lease_until > now() GROUP BY owner")
}

// queryMap returns the rows of query, of two columns, as a map of the
// first column to the second.
func queryMap[K comparable, V any](t *testing.T, pool *pgxpool.Pool, query string) map[K]V {
	t.Helper()
	rows, err := pool.Query(context.Background(), query)
	require.NoError(t, err)
	out := map[K]V{}
	for rows.Next() {
		var (
			k K
			v V
		)
		require.NoError(t, rows.Scan(&k, &v))
		out[k] = v
	}
	require.NoError(t, rows.Err())
	return out
}

// waitSplit waits until every relay owns its share of the lanes.
func waitSplit(t *testing.T, relays ...*runningRelay) {
	t.Helper()
	require.Eventually(t, func() bool {
		sum := 0.0
		for _, rr := range relays {
			n := metricValue(t, rr.reg, "outbox_lanes_owned", nil)
			if n < float64(outbox.Lanes/len(relays)) {
				return false
			}
			sum += n
		}
		return sum == outbox.Lanes
	}, 20*time.Second, 10*time.Millisecond, "lanes split between the replicas")
}

// A replica that reaches its database but not the broker hands its lanes
// over to the replica that can publish, says so on /readyz, and takes a
// share again once the broker answers. Nothing is lost, nothing published
// twice, each aggregate in order.
func TestRelayReplicaThatCannotPublishHandsItsLanesOver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := startOrderTopic(t)

	// Leases of 1.5 s: a replica that failed to publish for 3 s hands over.
	cfg := relay.Config{LeaseTTL: 1500 * time.Millisecond, BatchSize: 100, Workers: 2, BackoffMax: 500 * time.Millisecond}
	sw := &publisherSwitch{}
	cutOff := startRelay(t, relayOpts{id: "cut-off", urls: []string{e.url}, brokers: []string{e.broker.Addr()}, cfg: cfg,
		wrap: sw.wrap, probe: sw.probe})
	healthy := startRelay(t, relayOpts{id: "healthy", urls: []string{e.url}, brokers: []string{e.broker.Addr()}, cfg: cfg})
	waitSplit(t, cutOff, healthy)

	stop := make(chan struct{})
	wait := writers(t, e.pool, e.w, "cut", 8, 10, 1_000_000, 20*time.Millisecond, stop)
	require.Eventually(t, func() bool {
		return metricValue(t, cutOff.reg, "outbox_published_total", nil) > 0 && metricValue(t, healthy.reg, "outbox_published_total", nil) > 0
	}, 10*time.Second, 10*time.Millisecond, "both publish")

	sw.cut.Store(true)
	cut := time.Now()
	require.Eventually(t, func() bool { return metricValue(t, cutOff.reg, "outbox_lanes_owned", nil) == 0 },
		15*time.Second, 10*time.Millisecond, "the replica that cannot publish gives its lanes up")
	t.Logf("lanes handed over %s after the cut (HandOverAfter %s)", time.Since(cut).Round(time.Millisecond), 2*cfg.LeaseTTL)
	require.Eventually(t, func() bool { return metricValue(t, healthy.reg, "outbox_lanes_owned", nil) == outbox.Lanes },
		5*time.Second, 10*time.Millisecond, "the other replica publishes them")
	require.Equal(t, float64(outbox.Lanes/2), metricValue(t, cutOff.reg, "outbox_lane_handovers_total", map[string]string{"reason": "broker"}))
	err := cutOff.r.BrokerReady(ctx)
	require.ErrorContains(t, err, "broker unreachable", "readiness says why")
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	require.NoError(t, healthy.r.BrokerReady(ctx))

	// Everything written so far and from now on arrives, through the
	// healthy replica alone.
	close(stop)
	total := wait()
	e.c.waitDistinct(t, total, 30*time.Second)
	require.True(t, sw.cut.Load())
	require.Zero(t, requireOrderedPerAggregate(t, e.c.all()), "nothing published twice")
	require.Eventually(t, func() bool { return countRows(t, e.pool, "published_at IS NULL") == 0 }, 5*time.Second, 10*time.Millisecond)

	// The broker answers again: the replica comes back and takes a share.
	sw.cut.Store(false)
	waitSplit(t, cutOff, healthy)
	require.NoError(t, cutOff.r.BrokerReady(ctx))
	writeEvents(t, e.pool, e.w, []string{"after-0", "after-1", "after-2", "after-3"}, 1, 5)
	e.c.waitDistinct(t, total+20, 10*time.Second)
	require.Zero(t, requireOrderedPerAggregate(t, e.c.all()))
}

// When no replica can reach the broker, none hands anything over (it
// would only move the wait): each keeps its lanes and retries, and
// everything arrives once the broker is back.
func TestRelayReplicasAllCutOffKeepTheirLanes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newOutboxDB(t)
	proxy, addr := proxiedBroker(t)
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	c := collect(t, addr, event.TopicOrder)
	cfg := relay.Config{LeaseTTL: 1500 * time.Millisecond, BatchSize: 100, Workers: 2, BackoffMax: 500 * time.Millisecond}
	a := startRelay(t, relayOpts{id: "a", urls: []string{url}, brokers: []string{addr}, cfg: cfg, probe: func(context.Context) error { return nil }})
	b := startRelay(t, relayOpts{id: "b", urls: []string{url}, brokers: []string{addr}, cfg: cfg, probe: func(context.Context) error { return nil }})
	waitSplit(t, a, b)
	handovers := func(rr *runningRelay) float64 { return metricValue(t, rr.reg, "outbox_lane_handovers_total", nil) }
	before := []float64{handovers(a), handovers(b)} // the first replica handed half its lanes to the second

	stop := make(chan struct{})
	wait := writers(t, pool, w, "all-cut", 8, 10, 1_000_000, 20*time.Millisecond, stop)
	require.Eventually(t, func() bool { return c.distinct() > 100 }, 20*time.Second, 10*time.Millisecond, "flowing before the outage")

	proxy.Stop()
	cut := time.Now()
	require.Eventually(t, func() bool { return a.r.BrokerReady(ctx) != nil && b.r.BrokerReady(ctx) != nil },
		15*time.Second, 10*time.Millisecond, "both see the broker unreachable")
	// Three times as long as a replica waits before handing over.
	<-time.After(time.Until(cut.Add(3 * 2 * cfg.LeaseTTL)))
	for i, rr := range []*runningRelay{a, b} {
		require.Equal(t, before[i], handovers(rr), "no lane moved")
		require.Equal(t, float64(outbox.Lanes/2), metricValue(t, rr.reg, "outbox_lanes_owned", nil))
	}
	require.Equal(t, map[string]int{"a": outbox.Lanes / 2, "b": outbox.Lanes / 2}, lanesByOwner(t, pool))

	require.NoError(t, proxy.Start())
	close(stop)
	total := wait()
	c.waitDistinct(t, total, 60*time.Second)
	requireOrderedPerAggregate(t, c.all())
	require.Eventually(t, func() bool { return a.r.BrokerReady(ctx) == nil && b.r.BrokerReady(ctx) == nil },
		10*time.Second, 10*time.Millisecond, "ready again")
	for i, rr := range []*runningRelay{a, b} {
		require.Equal(t, before[i], handovers(rr), "no lane moved")
	}
}

// A replica that is alive but slow — its publish stalled for three lease
// periods — keeps its lanes (the lease loop renews them whatever the
// workers do): the other replica does not publish its events too, and
// nothing is lost when it resumes.
func TestRelaySlowReplicaKeepsItsLanes(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	c := collect(t, b.Addr(), event.TopicOrder)
	cfg := relay.Config{LeaseTTL: time.Second, BatchSize: 100, Workers: 2}
	sw := &publisherSwitch{}
	slow := startRelay(t, relayOpts{id: "slow", urls: []string{url}, brokers: []string{b.Addr()}, cfg: cfg, wrap: sw.wrap})
	other := startRelay(t, relayOpts{id: "other", urls: []string{url}, brokers: []string{b.Addr()}, cfg: cfg})
	t.Cleanup(sw.open) // before the relays stop
	waitSplit(t, slow, other)
	handovers := metricValue(t, slow.reg, "outbox_lane_handovers_total", nil)

	sw.close()
	aggs := bulkInsert(t, pool, w, "slow", 2000, 5)
	require.Eventually(t, func() bool { return sw.blocked.Load() > 0 }, 10*time.Second, 5*time.Millisecond, "a publish of the slow replica stalls")
	stalled := time.Now()
	owners := ownersByLane(t, pool)
	mine := 0
	for _, agg := range aggs {
		if owners[outbox.Lane(agg)] == "other" {
			mine += 5
		}
	}
	c.waitDistinct(t, mine, 20*time.Second)
	<-time.After(time.Until(stalled.Add(3 * cfg.LeaseTTL)))
	require.Equal(t, map[string]int{"slow": outbox.Lanes / 2, "other": outbox.Lanes / 2}, lanesByOwner(t, pool), "the slow replica keeps its leases")
	require.Equal(t, mine, c.distinct(), "the other replica publishes only its own lanes")
	require.Equal(t, handovers, metricValue(t, slow.reg, "outbox_lane_handovers_total", nil))

	sw.open()
	c.waitDistinct(t, len(aggs)*5, 30*time.Second)
	require.Zero(t, requireOrderedPerAggregate(t, c.all()), "nothing published twice")
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NULL") == 0 }, 5*time.Second, 10*time.Millisecond)
}

// ownersByLane returns the replica leasing each lane.
func ownersByLane(t *testing.T, pool *pgxpool.Pool) map[int16]string {
	t.Helper()
	return queryMap[int16, string](t, pool, "SELECT lane, owner FROM outbox_lanes")
}

// A replica lost with its node leaves its database sessions open (until
// TCP keepalive notices, hours by default) but stops renewing and beating:
// the survivor takes its lanes when their leases expire, not when its
// connections go.
func TestRelayIgnoresADeadReplicasLingeringConnections(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := startOrderTopic(t)

	// The dead replica: a session under its name, and half the lanes,
	// whose leases run out in a second.
	zcfg, err := pgx.ParseConfig(e.url)
	require.NoError(t, err)
	zcfg.RuntimeParams["application_name"] = relay.ApplicationNamePrefix + "zombie"
	zombie, err := pgx.ConnectConfig(ctx, zcfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = zombie.Close(context.Background()) })
	_, err = e.pool.Exec(ctx, `INSERT INTO outbox_lanes (lane) SELECT generate_series(0, 31) ON CONFLICT DO NOTHING`)
	require.NoError(t, err)
	_, err = e.pool.Exec(ctx, `UPDATE outbox_lanes SET owner = 'zombie', lease_until = now() + interval '1 second' WHERE lane < 16`)
	require.NoError(t, err)

	survivor := startRelay(t, relayOpts{id: "survivor", urls: []string{e.url}, brokers: []string{e.broker.Addr()}})
	require.Eventually(t, func() bool { return metricValue(t, survivor.reg, "outbox_lanes_owned", nil) == outbox.Lanes },
		10*time.Second, 10*time.Millisecond, "the survivor takes every lane")
	var aggs []string
	for lane := range int16(16) {
		aggs = append(aggs, aggregateInLane("zombie-lane", lane))
	}
	writeEvents(t, e.pool, e.w, aggs, 1, 2)
	e.c.waitDistinct(t, 32, 10*time.Second)
	require.Equal(t, 1, func() int {
		var n int
		require.NoError(t, e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
			relay.ApplicationNamePrefix+"zombie").Scan(&n))
		return n
	}(), "the dead replica's session is still there")
}

// Two relay processes with the default lease; one is killed with SIGKILL
// (no release, no goodbye). Its lanes are published by the survivor about
// a lease TTL after the crash — 2 to 3 s with the 3 s default, the claim
// timed to the moment the dead replica's leases expire — and within 4 s
// in any case.
func TestRelayTakesOverAKilledReplicasLanesWithinSeconds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bin := buildRelay(t)
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	c := collect(t, b.Addr(), event.TopicOrder)
	env := func(id string) map[string]string {
		return map[string]string{
			"OUTBOX_DATABASE_URLS": url,
			"KAFKA_BROKERS":        b.Addr(),
			"GRPC_ADDR":            "127.0.0.1:0",
			"HTTP_ADDR":            "127.0.0.1:0",
			"RELAY_ID":             id,
			// OUTBOX_LEASE_TTL: the default under test.
		}
	}
	startProcess(t, bin, env("survivor"))
	victim := startProcess(t, bin, env("victim"))
	require.Eventually(t, func() bool {
		owners := lanesByOwner(t, pool)
		return owners["survivor"] == outbox.Lanes/2 && owners["victim"] == outbox.Lanes/2
	}, 30*time.Second, 10*time.Millisecond, "lanes split between the processes")
	// Both publish (and the reader has joined) before the crash.
	var warm []string
	for lane := range int16(outbox.Lanes) {
		warm = append(warm, aggregateInLane("warm", lane))
	}
	writeEvents(t, pool, w, warm, 1, 1)
	c.waitDistinct(t, len(warm), 20*time.Second)

	var lanes []int16
	for lane, owner := range ownersByLane(t, pool) {
		if owner == "victim" {
			lanes = append(lanes, lane)
		}
	}
	require.Len(t, lanes, outbox.Lanes/2)
	victim.kill9(t)
	killed := time.Now()
	// One event in each of the dead replica's lanes, right after the crash.
	var orphans []string
	for _, lane := range lanes {
		orphans = append(orphans, aggregateInLane("orphan", lane))
	}
	writeEvents(t, pool, w, orphans, 1, 1)
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE aggregate_id = ANY($1) AND published_at IS NOT NULL", orphans).Scan(&n))
		return n == len(orphans)
	}, 30*time.Second, 5*time.Millisecond, "the survivor publishes the dead replica's lanes")
	took := time.Since(killed)
	t.Logf("the dead replica's lanes published %s after SIGKILL", took.Round(time.Millisecond))
	require.LessOrEqual(t, took, 4*time.Second, "takeover within about a lease TTL of the crash")
	c.waitDistinct(t, len(warm)+len(orphans), 10*time.Second)
	require.Equal(t, map[string]int{"survivor": outbox.Lanes}, lanesByOwner(t, pool))
}

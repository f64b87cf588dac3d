package relay_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// writers inserts events from several concurrent writers, each for its own
// aggregates, version after version, until stop is closed or each writer
// reached maxVersion. It returns the number of events committed.
func writers(t *testing.T, pool *pgxpool.Pool, w *outbox.Writer, prefix string, n, aggsPer int, maxVersion int64, pace time.Duration, stop <-chan struct{}) func() int {
	t.Helper()
	var total atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		aggs := make([]string, aggsPer)
		for j := range aggs {
			aggs[j] = fmt.Sprintf("%s-%d-%d", prefix, i, j)
		}
		wg.Go(func() {
			for v := int64(1); v <= maxVersion; v++ {
				select {
				case <-stop:
					return
				default:
				}
				writeEvents(t, pool, w, aggs, v, v)
				total.Add(int64(len(aggs)))
				if pace > 0 {
					select {
					case <-stop:
						return
					case <-time.After(pace):
					}
				}
			}
		})
	}
	return func() int { wg.Wait(); return int(total.Load()) }
}

// Two and three replicas at once: they split the lanes, each aggregate's
// events arrive in order, and — leases being handed over only between
// batches — no event is published twice, also when a replica stops and the
// others take its lanes over.
func TestRelayReplicasSplitLanesAndKeepPerAggregateOrder(t *testing.T) {
	t.Parallel()
	for _, replicas := range []int{2, 3} {
		t.Run(strconv.Itoa(replicas)+" replicas", func(t *testing.T) {
			t.Parallel()
			e := startOrderTopic(t)

			cfg := relay.Config{LeaseTTL: 2 * time.Second, BatchSize: 100, Workers: 2}
			var relays []*runningRelay
			for i := range replicas {
				relays = append(relays, startRelay(t, relayOpts{id: fmt.Sprintf("r%d", i), urls: []string{e.url}, brokers: []string{e.broker.Addr()}, cfg: cfg}))
			}
			// Writers run while the replicas start and share the lanes out.
			stop := make(chan struct{})
			wait := writers(t, e.pool, e.w, "rep", 8, 10, 150, 10*time.Millisecond, stop)

			owned := func(rr *runningRelay) float64 { return metricValue(t, rr.reg, "outbox_lanes_owned", nil) }
			require.Eventually(t, func() bool {
				sum := 0.0
				for _, rr := range relays {
					if owned(rr) < float64(outbox.Lanes/replicas) {
						return false
					}
					sum += owned(rr)
				}
				return sum == outbox.Lanes
			}, 20*time.Second, 20*time.Millisecond, "lanes split between the replicas")

			for i, rr := range relays {
				require.Eventually(t, func() bool { return metricValue(t, rr.reg, "outbox_published_total", nil) > 0 },
					10*time.Second, 10*time.Millisecond, "replica %d publishes its lanes", i)
			}

			// One replica leaves (graceful): the others take its lanes.
			gone := relays[0]
			gone.stop(t)
			require.Eventually(t, func() bool {
				sum := 0.0
				for _, rr := range relays[1:] {
					sum += owned(rr)
				}
				return sum == outbox.Lanes
			}, 20*time.Second, 20*time.Millisecond, "lanes taken over")

			total := wait()
			close(stop)
			e.c.waitDistinct(t, total, 30*time.Second)
			dups := requireOrderedPerAggregate(t, e.c.all())
			require.Zero(t, dups, "no event published twice in the normal case")
			require.Eventually(t, func() bool { return countRows(t, e.pool, "published_at IS NULL") == 0 }, 5*time.Second, 10*time.Millisecond)
		})
	}
}

// The broker unreachable for 10 s (a TCP proxy cut; the development broker
// keeps its data in memory, so it cannot be restarted): writers keep
// inserting, the relay backs off, the lag gauge grows, and everything
// arrives once the network is back.
func TestRelaySurvivesABrokerOutage(t *testing.T) {
	t.Parallel()
	url, pool := newOutboxDB(t)
	proxy, addr := proxiedBroker(t)
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	c := collect(t, addr, event.TopicOrder)
	reg := prometheus.NewRegistry()
	startRelay(t, relayOpts{urls: []string{url}, brokers: []string{addr}, reg: reg,
		cfg: relay.Config{BackoffMax: 500 * time.Millisecond, StatsInterval: 100 * time.Millisecond}})

	stop := make(chan struct{})
	wait := writers(t, pool, w, "outage", 4, 5, 1_000_000, 20*time.Millisecond, stop)
	require.Eventually(t, func() bool { return c.distinct() > 100 }, 20*time.Second, 10*time.Millisecond, "flowing before the outage")

	proxy.Stop()
	cut := time.Now()
	lag := func() float64 { return metricValue(t, reg, "outbox_processing_lag_seconds", nil) }
	require.Eventually(t, func() bool { return lag() >= 5 }, 15*time.Second, 50*time.Millisecond, "lag grows during the outage")
	during := countRows(t, pool, "published_at IS NULL")
	require.Positive(t, during, "events wait in the outbox")
	// The outage lasts 10 s, whatever the assertions above took.
	<-time.After(time.Until(cut.Add(10 * time.Second)))
	require.NoError(t, proxy.Start())
	close(stop)
	total := wait()

	c.waitDistinct(t, total, 60*time.Second)
	requireOrderedPerAggregate(t, c.all())
	require.Eventually(t, func() bool { return lag() < 1 }, 20*time.Second, 50*time.Millisecond, "lag recovers")
	require.Positive(t, metricValue(t, reg, "outbox_failed_events_total", map[string]string{"reason": "broker"}), "failed attempts counted")
	require.Zero(t, metricValue(t, reg, "outbox_failed_events_total", map[string]string{"reason": "rejected"}), "nothing parked")
	require.Zero(t, countRows(t, pool, "parked_at IS NOT NULL"))
}

// proxiedBroker starts a development broker behind an in-process Toxiproxy
// proxy. The broker advertises the proxy's address, so clients reach it
// only through the proxy (Kafka clients connect to the advertised address
// after bootstrap, which would otherwise bypass the proxy).
func proxiedBroker(t *testing.T) (*toxiproxy.Proxy, string) {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	// The broker's port was free a moment ago; another process may take it
	// in between: try another.
	for attempt := 1; ; attempt++ {
		brokerAddr := freeAddr(t)
		proxy := toxiproxy.NewProxy(srv, "kafka", "127.0.0.1:0", brokerAddr)
		require.NoError(t, proxy.Start())
		b, err := broker.Start(context.Background(), broker.Config{Addr: brokerAddr, AdvertisedAddr: proxy.Listen})
		if err != nil && attempt < 5 {
			proxy.Stop()
			continue
		}
		require.NoError(t, err)
		t.Cleanup(b.Close)
		t.Cleanup(proxy.Stop)
		return proxy, proxy.Listen
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

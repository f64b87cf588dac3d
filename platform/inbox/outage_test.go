package inbox_test

import (
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/platform/tcpproxy"
)

// advertising is a listener whose Addr, which kfake advertises to clients,
// is another address (a proxy in front of it).
type advertising struct {
	net.Listener
	addr net.Addr
}

func (a advertising) Addr() net.Addr { return a.addr }

// startProxiedBroker runs a one-node kfake cluster (see startBroker) that
// clients reach, metadata included, only through the returned proxy.
func startProxiedBroker(t *testing.T, partitions int32) *tcpproxy.Proxy {
	t.Helper()
	px := tcpproxy.Listen(t)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adv, err := net.ResolveTCPAddr("tcp", px.Addr())
	require.NoError(t, err)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic),
		kfake.ListenFn(func(string, string) (net.Listener, error) { return advertising{ln, adv}, nil }))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	px.Forward(ln.Addr().String())
	return px
}

// The order projection's reader, at a MaxWait of 50ms, dialled the broker
// 75 times a second during BenchmarkOrderSaga on two busy cores: kafka-go
// stops reading an empty fetch's answer a quarter of MaxWait after the
// broker's wait ends, then closes the connection and dials again. A broker
// that answers 20ms late (10ms each way) must not cost a reader with the
// default MaxWait a connection per fetch.
func TestReaderKeepsItsConnections(t *testing.T) {
	t.Parallel()
	px := startProxiedBroker(t, 2)
	px.Latency(10 * time.Millisecond)
	logs := &servicetest.Logs{}
	cfg := inbox.Config{Brokers: []string{px.Addr()}, GroupID: "keeps-" + rand.Text(), Topics: []string{topic}}
	r := kafka.NewReader(cfg.Reader(nil, slog.New(slog.NewJSONHandler(logs, nil))))
	t.Cleanup(func() { _ = r.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _, _ = r.FetchMessage(ctx) }() // nothing to read: empty fetches

	// Stats counts since its last call: add them up until both partitions
	// have had several empty fetches.
	var total kafka.ReaderStats
	require.Eventually(t, func() bool {
		s := r.Stats()
		total.Fetches += s.Fetches
		total.Dials += s.Dials
		total.Errors += s.Errors
		return total.Fetches >= 16
	}, 60*time.Second, 50*time.Millisecond)
	errs := logs.All(inbox.ReaderErrorLog)
	require.Zero(t, total.Errors, "fetch errors (%d dials for %d fetches); logged %d: %v", total.Dials, total.Fetches, len(errs), errs)
	require.LessOrEqual(t, total.Dials, int64(2), "one connection per partition")
	require.Empty(t, errs)
}

// Issue 10: Run returned "inbox: fetch: …" when the broker could not be
// reached, at start or mid-run, and the binary exited with it. Run now
// logs, waits and fetches again until the broker is back, then applies
// what was published meanwhile; it returns nil only when stopped.
func TestRunOutlivesTheBroker(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	px := startProxiedBroker(t, 2)
	px.Cut() // not there at start

	logs := &servicetest.Logs{}
	c, err := inbox.New(inbox.Config{
		Brokers: []string{px.Addr()}, GroupID: b.group, Topics: []string{topic}, Consumer: "projector",
		BackoffMin: 5 * time.Millisecond, BackoffMax: 50 * time.Millisecond, MaxWait: 50 * time.Millisecond,
	}, b.pool, recordEffect, inbox.Options{Registerer: b.reg, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Keys: b.keys})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	running := func() bool {
		select {
		case err := <-done:
			done <- err
			return false
		default:
			return true
		}
	}
	fetchFailures := func() int { return len(logs.All("kafka fetch failed; retrying")) }
	// outlives waits, with the broker cut, until Run has failed to fetch
	// twice more than the failures before the cut and is still running;
	// then it restores the broker and checks that m, published afterwards,
	// is applied once, as the processed-th message.
	outlives := func(failuresBefore int, m msg, processed int) {
		t.Helper()
		require.Eventually(t, func() bool { return fetchFailures() >= failuresBefore+2 || !running() },
			60*time.Second, 10*time.Millisecond)
		if !running() {
			t.Fatalf("Run returned: %v", <-done)
		}
		px.Restore()
		produce(t, px.Addr(), m)
		b.waitProcessed(t, processed)
		require.Equal(t, 1, b.effects(t, m.id))
	}

	outlives(0, newMsg("agg-1", 1, "after the start"), 1)
	failures := fetchFailures()
	px.Cut() // mid-run
	outlives(failures, newMsg("agg-2", 1, "after the outage"), 2)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("consumer did not stop")
	}
}

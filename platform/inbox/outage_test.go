package inbox_test

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

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

// Issue 10: Run returned "inbox: fetch: …" when the broker could not be
// reached, at start or mid-run, and the binary exited with it. Run now
// logs, waits and fetches again until the broker is back, then applies
// what was published meanwhile; it returns nil only when stopped.
func TestRunOutlivesTheBroker(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	px := tcpproxy.Listen(t)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adv, err := net.ResolveTCPAddr("tcp", px.Addr())
	require.NoError(t, err)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic),
		kfake.ListenFn(func(string, string) (net.Listener, error) { return advertising{ln, adv}, nil }))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	px.Forward(ln.Addr().String())
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

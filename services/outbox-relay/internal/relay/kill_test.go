package relay_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// relayProcess is the outbox-relay binary run by a test.
type relayProcess struct {
	cmd  *exec.Cmd
	out  *servicetest.Logs
	done chan struct{}
}

// buildRelay builds the outbox-relay binary into a temporary directory.
func buildRelay(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "outbox-relay")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/goodgo/goodgo/services/outbox-relay")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

// startProcess starts the binary with env and credentials of a fresh
// PKI; it is killed at test end.
func startProcess(t *testing.T, bin string, env map[string]string) *relayProcess {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "OTEL_SDK_DISABLED=true")
	for k, v := range authtest.New(t).Env("outbox-relay") {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &relayProcess{cmd: cmd, out: &servicetest.Logs{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	require.NoError(t, cmd.Start())
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("relay %d output:\n%s", cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

func (p *relayProcess) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("relay did not die")
	}
}

// A relay killed with SIGKILL in the middle of draining loses nothing: its
// successor waits for the dead replica's leases to expire, then publishes
// what was not marked. Events of the batch in flight may arrive twice (at
// least once); each aggregate's first deliveries stay in order, and a
// consumer with the inbox applies every event exactly once.
func TestRelayKilledMidBatchLosesNothing(t *testing.T) {
	t.Parallel()
	bin := buildRelay(t)
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	const total, perAgg = 5_000, 20
	bulkInsert(t, pool, w, "kill", total, perAgg)
	c := collect(t, b.Addr(), event.TopicOrder)

	env := map[string]string{
		"OUTBOX_DATABASE_URLS": url,
		"KAFKA_BROKERS":        b.Addr(),
		"GRPC_ADDR":            "127.0.0.1:0",
		"HTTP_ADDR":            "127.0.0.1:0",
		"OUTBOX_LEASE_TTL":     "2s",
		// Small batches, one worker: a slow drain, to be killed in.
		"OUTBOX_BATCH_SIZE": "100",
		"OUTBOX_WORKERS":    "1",
	}
	env["RELAY_ID"] = "first"
	first := startProcess(t, bin, env)
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NOT NULL") >= 1000 },
		30*time.Second, 5*time.Millisecond, "first relay publishes")

	// Catch it between the broker's ack and the mark: with the lease table
	// locked, the next mark (which checks the lease) waits, after its batch
	// was published. Kafka then holds more events than the table marks.
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = lock.Exec(ctx, "LOCK TABLE outbox_lanes IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return c.distinct() > countRows(t, pool, "published_at IS NOT NULL") },
		30*time.Second, 5*time.Millisecond, "a batch acknowledged and not marked")
	first.kill9(t)
	// The dead client's session goes too (as PostgreSQL's TCP keepalive
	// would find), so its waiting mark never runs.
	_, err = pool.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'outbox-relay/first'")
	require.NoError(t, err)
	require.NoError(t, lock.Rollback(ctx))
	left := countRows(t, pool, "published_at IS NULL")
	require.Positive(t, left, "killed mid-drain")
	var owner string
	require.NoError(t, pool.QueryRow(ctx, "SELECT min(owner) FROM outbox_lanes").Scan(&owner))
	require.Equal(t, "first", owner, "the dead replica's leases are still there")

	env["RELAY_ID"] = "second"
	startProcess(t, bin, env)
	c.waitDistinct(t, total, 60*time.Second)
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NULL") == 0 }, 10*time.Second, 10*time.Millisecond)
	msgs := c.all()
	dups := requireOrderedPerAggregate(t, msgs)
	t.Logf("%d events, %d delivered, %d duplicates, %d were left at the kill", total, len(msgs), dups, left)
	// At least once: the batch in flight at the kill is published again,
	// and nothing else.
	require.Positive(t, dups)
	require.LessOrEqual(t, dups, 100)

	// A consumer with the inbox applies each event once.
	ddl, err := os.ReadFile("../../../../db/inbox/schema/inbox.sql")
	require.NoError(t, err)
	_, cpool := pgtest.NewDatabase(t, fstest.MapFS{
		"000001_inbox.up.sql":     {Data: ddl},
		"000002_effects.up.sql":   {Data: []byte("CREATE TABLE effects (event_id UUID NOT NULL, version BIGINT NOT NULL);")},
		"000001_inbox.down.sql":   {Data: []byte("SELECT 1;")},
		"000002_effects.down.sql": {Data: []byte("SELECT 1;")},
	})
	reg := prometheus.NewRegistry()
	consumer, err := inbox.New(inbox.Config{
		Brokers: []string{b.Addr()}, GroupID: "projector-" + uuid.NewString()[:8], Topics: []string{event.TopicOrder},
		CommitInterval: 100 * time.Millisecond, MaxWait: 50 * time.Millisecond,
	}, cpool, func(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
		_, err := tx.Exec(ctx, "INSERT INTO effects (event_id, version) VALUES ($1, $2)", ev.ID, ev.AggregateVersion)
		return err
	}, inbox.Options{Registerer: reg, Keys: testKeys(t)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.Eventually(t, func() bool {
		return metricValue(t, reg, "inbox_processed_total", nil) == float64(len(msgs))
	}, 60*time.Second, 50*time.Millisecond, "consumer processes every message")
	require.Equal(t, float64(total), metricValue(t, reg, "inbox_processed_total", map[string]string{"result": inbox.ResultApplied}))
	require.Equal(t, float64(dups), metricValue(t, reg, "inbox_processed_total", map[string]string{"result": inbox.ResultDuplicate}))
	var effects, distinct int
	require.NoError(t, cpool.QueryRow(ctx, "SELECT count(*), count(DISTINCT event_id) FROM effects").Scan(&effects, &distinct))
	require.Equal(t, total, distinct)
	require.Equal(t, total, effects, "each event applied once, duplicates skipped")
}

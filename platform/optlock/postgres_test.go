package optlock_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/servicetest"
)

const adminURL = "postgres://postgres@127.0.0.1:5432/postgres"

// newCounterDB creates a throw-away database with a versioned counters
// table holding rows 1..rows (n = 0, version = 1) and drops it at cleanup.
func newCounterDB(tb testing.TB, rows, maxConns int) *pgxpool.Pool {
	tb.Helper()
	ctx := context.Background()
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	name := "goodgo_optlock_test_" + hex.EncodeToString(suffix)

	admin, err := pgx.Connect(ctx, adminURL)
	require.NoError(tb, err)
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), adminURL)
		require.NoError(tb, err)
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		require.NoError(tb, err)
	})

	cfg, err := pgxpool.ParseConfig(fmt.Sprintf("postgres://postgres@127.0.0.1:5432/%s?pool_max_conns=%d", name, maxConns))
	require.NoError(tb, err)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	_, err = pool.Exec(ctx, `CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL, version bigint NOT NULL)`)
	require.NoError(tb, err)
	_, err = pool.Exec(ctx, `INSERT INTO counters (id, n, version) SELECT g, 0, 1 FROM generate_series(1, $1::int) g`, rows)
	require.NoError(tb, err)
	return pool
}

// counters is a minimal repository in the shape DESIGN.md prescribes.
type counters struct{ pool *pgxpool.Pool }

func (c counters) version(ctx context.Context, id int) (int64, error) {
	var v int64
	err := c.pool.QueryRow(ctx, `SELECT version FROM counters WHERE id = $1`, id).Scan(&v)
	return v, err
}

// increment adds one if the row still has version; otherwise ErrConflict.
func (c counters) increment(ctx context.Context, id int, version int64) error {
	tag, err := c.pool.Exec(ctx, `UPDATE counters SET n = n + 1, version = version + 1 WHERE id = $1 AND version = $2`, id, version)
	if err != nil {
		return fmt.Errorf("increment counter %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("increment counter %d at version %d: %w", id, version, optlock.ErrConflict)
	}
	return nil
}

// incrementLocked adds one unconditionally: the pessimistic path, which
// waits for the row lock instead of checking the version.
func (c counters) incrementLocked(ctx context.Context, id int) error {
	tag, err := c.pool.Exec(ctx, `UPDATE counters SET n = n + 1, version = version + 1 WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("increment counter %d: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("increment counter %d: no such row", id)
	}
	return nil
}

func (c counters) row(tb testing.TB, id int) (n, version int64) {
	tb.Helper()
	require.NoError(tb, c.pool.QueryRow(context.Background(), `SELECT n, version FROM counters WHERE id = $1`, id).Scan(&n, &version))
	return n, version
}

func TestRetryLosesNoUpdateUnderContention(t *testing.T) {
	repo := counters{newCounterDB(t, 1, 20)}
	reg := prometheus.NewRegistry()
	m, err := optlock.NewMetrics(reg)
	require.NoError(t, err)

	const workers, perWorker = 20, 10
	policy := optlock.Policy{MaxAttempts: 8, Backoff: backoff.Policy{Min: time.Millisecond, Max: 20 * time.Millisecond, Jitter: backoff.FullJitter}}
	var succeeded, gaveUp atomic.Int64
	// Every worker's first attempt reads the version, then waits until all
	// have read it: the first round is guaranteed to collide (19 conflicts).
	var firstReads sync.WaitGroup
	firstReads.Add(workers)

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				first := i == 0
				err := optlock.Retry(t.Context(), policy, m, "counter", func(ctx context.Context) error {
					v, err := repo.version(ctx, 1)
					if first {
						// Even when the read failed: a worker that left
						// without Done would hold every other one here.
						first = false
						firstReads.Done()
						firstReads.Wait()
					}
					if err != nil {
						return err
					}
					return repo.increment(ctx, 1, v)
				})
				switch {
				case err == nil:
					succeeded.Add(1)
				case errors.Is(err, optlock.ErrConflict):
					gaveUp.Add(1)
				default:
					t.Errorf("worker %d: %v", w, err)
				}
			}
		})
	}
	wg.Wait()

	n, version := repo.row(t, 1)
	require.Equal(t, succeeded.Load(), n, "every successful increment is in the row, none lost")
	require.Equal(t, n+1, version)
	require.Equal(t, int64(workers*perWorker), succeeded.Load()+gaveUp.Load())
	require.Positive(t, succeeded.Load())

	attempts := gather(t, reg, "optimistic_lock_attempts_total", "counter")
	conflicts := gather(t, reg, "optimistic_lock_conflicts_total", "counter")
	retries := gather(t, reg, "optimistic_lock_retries_total", "counter")
	require.GreaterOrEqual(t, conflicts, float64(workers-1), "the synchronized first round collides")
	require.Equal(t, float64(succeeded.Load())+conflicts, attempts, "every attempt either won or conflicted")
	require.Equal(t, conflicts-float64(gaveUp.Load()), retries, "every conflict but the last of an exhausted Retry is retried")
	require.InDelta(t, 1-conflicts/attempts, gather(t, reg, "optimistic_lock_success_rate", "counter"), 1e-9)
	t.Logf("increments=%d gave_up=%d attempts=%.0f conflicts=%.0f", succeeded.Load(), gaveUp.Load(), attempts, conflicts)
}

func TestContentionLosesNoUpdateOnAHotRow(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts optlock.ContentionOptions
		// pessimistic: whether the row must have switched by the end.
		pessimistic bool
	}{
		{"optimistic_only", optlock.ContentionOptions{Threshold: 1, Cool: 1}, false},
		{"switches", optlock.ContentionOptions{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := counters{newCounterDB(t, 1, 8)}
			reg := prometheus.NewRegistry()
			m, err := optlock.NewMetrics(reg)
			require.NoError(t, err)
			policy, err := optlock.NewContention("counter", tc.opts, reg)
			require.NoError(t, err)
			retry := optlock.DefaultPolicy
			retry.MaxAttempts = 1000 // the optimistic-only run must not give up

			const workers, perWorker = 16, 25
			var succeeded, pessimistic atomic.Int64
			var wg sync.WaitGroup
			for range workers {
				wg.Go(func() {
					for range perWorker {
						err := policy.Update(t.Context(), "1", retry, m,
							func(ctx context.Context) error {
								v, err := repo.version(ctx, 1)
								if err != nil {
									return err
								}
								return repo.increment(ctx, 1, v)
							},
							func(ctx context.Context) error {
								pessimistic.Add(1)
								return repo.incrementLocked(ctx, 1)
							})
						if err != nil {
							t.Error(err)
							return
						}
						succeeded.Add(1)
					}
				})
			}
			wg.Wait()

			n, version := repo.row(t, 1)
			require.Equal(t, int64(workers*perWorker), succeeded.Load())
			require.Equal(t, succeeded.Load(), n, "every update is in the row, none lost")
			require.Equal(t, n+1, version, "one version per applied update")
			attempts := gather(t, reg, "optimistic_lock_attempts_total", "counter")
			require.Equal(t, float64(n-pessimistic.Load())+gather(t, reg, "optimistic_lock_conflicts_total", "counter"), attempts,
				"every optimistic attempt won or conflicted; pessimistic updates are not attempts")
			require.Equal(t, tc.pessimistic, pessimistic.Load() > 0)
			require.Equal(t, tc.pessimistic, servicetest.MetricSum(t, reg, "optlock_mode_switches_total") > 0)
			t.Logf("pessimistic updates=%d optimistic attempts=%.0f", pessimistic.Load(), attempts)
		})
	}
}

func TestVersionTokenUpdateByTwoClients(t *testing.T) {
	repo := counters{newCounterDB(t, 1, 4)}
	reg := prometheus.NewRegistry()
	m, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	signer, err := optlock.NewSigner("k1", map[string][]byte{"k1": key1})
	require.NoError(t, err)
	ctx := t.Context()

	// Both clients read the counter and receive the same token.
	v, err := repo.version(ctx, 1)
	require.NoError(t, err)
	token := signer.Token("counter", "1", v)

	update := func(token string) error {
		version, err := signer.Verify("counter", "1", token)
		if err != nil {
			return err
		}
		return m.Record("counter", repo.increment(ctx, 1, version))
	}
	require.NoError(t, update(token), "the first client wins")
	require.ErrorIs(t, update(token), optlock.ErrConflict, "the second presents a stale token")
	require.ErrorIs(t, update(signer.Token("counter", "2", v+1)), optlock.ErrInvalidToken,
		"a token for another counter does not unlock this one")

	n, version := repo.row(t, 1)
	require.Equal(t, int64(1), n)
	require.Equal(t, v+1, version)
	require.Equal(t, 2.0, gather(t, reg, "optimistic_lock_attempts_total", "counter"))
	require.Equal(t, 1.0, gather(t, reg, "optimistic_lock_conflicts_total", "counter"))
	require.Equal(t, 0.5, gather(t, reg, "optimistic_lock_success_rate", "counter"))
}

func TestNewMetricsRejectsDuplicateRegistration(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	_, err = optlock.NewMetrics(reg)
	require.Error(t, err)
}

// gather returns the value of the metric name with label aggregate, failing
// the test if it is absent.
func gather(tb testing.TB, g prometheus.Gatherer, name, aggregate string) float64 {
	tb.Helper()
	return servicetest.Metric(tb, g, name, "aggregate", aggregate)
}

// updateMode is how BenchmarkUpdate's writers update: "adaptive" (the
// default) lets a Contention switch a hot row to one atomic increment,
// "optimistic" always reads and retries, as every writer did before
// Contention existed. Compare them side by side:
//
//	go test -run '^$' -bench '^BenchmarkUpdate$' -count 5 ./optlock/ -optlock.mode=optimistic
var updateMode = flag.String("optlock.mode", "adaptive", `BenchmarkUpdate's writers: "adaptive" or "optimistic"`)

// BenchmarkUpdate measures version-checked increments (read version, then
// conditional UPDATE, retried on conflict with DefaultPolicy) against the
// real PostgreSQL, with 4 writers per CPU. In the adaptive mode (see
// updateMode) a row whose updates collide takes the pessimistic path
// instead: one `UPDATE … SET n = n + 1` that waits for the row lock and
// cannot conflict.
func BenchmarkUpdate(b *testing.B) {
	const parallelism = 4
	writers := parallelism * runtime.GOMAXPROCS(0)
	repo := counters{newCounterDB(b, 4096, writers)}
	var nextRow atomic.Int64
	adaptive := *updateMode == "adaptive"
	if !adaptive && *updateMode != "optimistic" {
		b.Fatalf("-optlock.mode=%q: want adaptive or optimistic", *updateMode)
	}

	run := func(b *testing.B, rowFor func() int) {
		reg := prometheus.NewRegistry()
		m, err := optlock.NewMetrics(reg)
		require.NoError(b, err)
		policy, err := optlock.NewContention("counter", optlock.ContentionOptions{}, reg)
		require.NoError(b, err)
		var (
			ok, gaveUp atomic.Int64
			latMu      sync.Mutex
			lat        []time.Duration
		)
		b.SetParallelism(parallelism)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			id := rowFor()
			optimistic := func(ctx context.Context) error {
				v, err := repo.version(ctx, id)
				if err != nil {
					return err
				}
				return repo.increment(ctx, id, v)
			}
			pessimistic := func(ctx context.Context) error { return repo.incrementLocked(ctx, id) }
			var mine []time.Duration
			for pb.Next() {
				start := time.Now()
				var err error
				if adaptive {
					err = policy.Update(context.Background(), strconv.Itoa(id), optlock.DefaultPolicy, m, optimistic, pessimistic)
				} else {
					err = optlock.Retry(context.Background(), optlock.DefaultPolicy, m, "counter", optimistic)
				}
				switch {
				case err == nil:
					ok.Add(1)
					mine = append(mine, time.Since(start))
				case errors.Is(err, optlock.ErrConflict):
					gaveUp.Add(1)
				default:
					b.Error(err)
					return
				}
			}
			latMu.Lock()
			lat = append(lat, mine...)
			latMu.Unlock()
		})
		b.StopTimer()
		attempts := gather(b, reg, "optimistic_lock_attempts_total", "counter")
		conflicts := gather(b, reg, "optimistic_lock_conflicts_total", "counter")
		b.ReportMetric(float64(ok.Load())/b.Elapsed().Seconds(), "updates/s")
		b.ReportMetric(conflicts/max(attempts, 1), "conflicts/attempt")
		b.ReportMetric(conflicts/float64(b.N), "conflicts/update")
		b.ReportMetric(float64(gaveUp.Load())/float64(b.N), "gave_up/op")
		if len(lat) > 0 {
			slices.Sort(lat)
			b.ReportMetric(float64(lat[min(len(lat)-1, len(lat)*99/100)].Microseconds())/1000, "p99-ms")
		}
	}
	b.Run("low_contention", func(b *testing.B) {
		// Each writer owns a row: conflicts only if rows run out (they do not: 4096).
		run(b, func() int { return int(nextRow.Add(1)%4096) + 1 })
	})
	b.Run("high_contention", func(b *testing.B) {
		run(b, func() int { return 1 })
	})
}

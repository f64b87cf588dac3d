package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
	"github.com/goodgo/goodgo/platform/postgres"
)

// ApplicationNamePrefix starts the application_name of every relay
// connection; the rest is the relay id, so that a session in
// pg_stat_activity names its replica (replicas count each other by
// heartbeats and leases, not by sessions, which outlive a lost node).
const ApplicationNamePrefix = "outbox-relay/"

// database relays one outbox database: a LISTEN connection, a lease
// manager, Workers batch loops and the janitor/statistics loop, all sharing
// one pool and all retrying on their own when the database is unreachable.
type database struct {
	r       *Relay
	name    string // database name, the metrics label
	where   string // host:port/database, for logs
	pool    *pgxpool.Pool
	q       *outboxdb.Queries
	health  *health
	lanes   *leases
	workers []*worker
	log     *slog.Logger
}

func newDatabase(r *Relay, url string) (*database, error) {
	cfg, err := poolConfig(url, r.cfg.ID, r.cfg.Workers)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("relay: pool: %w", err)
	}
	d := &database{
		r:     r,
		name:  cfg.ConnConfig.Database,
		where: postgres.Describe(cfg.ConnConfig.Config),
		pool:  pool,
		q:     outboxdb.New(pool),
	}
	d.log = r.log.With("database", d.where)
	d.health = &health{log: d.log}
	d.lanes = newLeases(d)
	for i := range r.cfg.Workers {
		d.workers = append(d.workers, newWorker(d, i))
	}
	return d, nil
}

// poolConfig is the pool of one outbox database for relay replica id with
// workers batch loops.
func poolConfig(url, id string, workers int) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors mask the password.
		return nil, fmt.Errorf("relay: parse database URL: %w", err)
	}
	// Workers, the lease manager and the janitor/statistics loop; the LISTEN
	// connection is separate.
	cfg.MaxConns = int32(workers + 3)
	cfg.AfterConnect = postgres.AfterConnect
	cfg.MinConns = 0 // connect lazily: the database may not exist yet
	rp := cfg.ConnConfig.RuntimeParams
	rp["application_name"] = ApplicationNamePrefix + id
	// The relay's reads are index lookups on a hot, cached table. With the
	// default random_page_cost (4, spinning disks) the planner prefers
	// walking the primary key and filtering over the work-queue index, which
	// costs a scan of every published row per batch.
	rp["random_page_cost"] = "1.1"
	// Plan each statement once per connection. Under the default (auto)
	// PostgreSQL prices a generic plan of "id = ANY($1)" at ten elements,
	// so the custom plan of a batch of one or two rows always looks
	// cheaper and MarkPublished was planned again on every call: 0.2 ms of
	// the server's CPU each time, more than running it. Every relay
	// statement is a lookup by key or lane, whose plan does not depend on
	// the values.
	rp["plan_cache_mode"] = "force_generic_plan"
	return cfg, nil
}

// run serves the database until ctx is cancelled, then stops the workers
// (each finishes its batch in flight) and releases the lanes.
func (d *database) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { d.listen(ctx) })
	wg.Go(func() { d.maintain(ctx) })
	workersDone := make(chan struct{})
	var ww sync.WaitGroup
	for _, w := range d.workers {
		ww.Go(func() { w.run(ctx) })
	}
	go func() { ww.Wait(); close(workersDone) }()
	d.lanes.run(ctx, workersDone)
	<-workersDone
	wg.Wait()
}

// wakeAll tells every worker that rows may be waiting.
func (d *database) wakeAll() {
	for _, w := range d.workers {
		w.wake()
	}
}

// wakeLanes wakes the workers owning the lanes a notification names
// ("3,17", see the outbox_notify trigger), or every worker when the payload
// is not such a list.
func (d *database) wakeLanes(payload string) {
	for s := range strings.SplitSeq(payload, ",") {
		lane, err := strconv.Atoi(s)
		if err != nil || lane < 0 {
			d.wakeAll()
			return
		}
		d.workers[lane%len(d.workers)].wake()
	}
}

// listen keeps a LISTEN connection open: it wakes the workers on every
// writer's notification and passes the other replicas' heartbeats to the
// lease loop. After (re)connecting it wakes the workers once, since
// notifications sent while it was away are lost.
func (d *database) listen(ctx context.Context) {
	b := d.r.newBackoff()
	for ctx.Err() == nil {
		err := d.listenOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		d.health.fail(err)
		if backoff.Sleep(ctx, b.Next()) != nil {
			return
		}
	}
}

func (d *database) listenOnce(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, d.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	for _, channel := range []string{"outbox", HeartbeatChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
			return fmt.Errorf("listen: %w", err)
		}
	}
	d.health.ok()
	d.wakeAll()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("listen: %w", err)
		}
		if n.Channel == HeartbeatChannel {
			d.lanes.heard(n.Payload)
			continue
		}
		d.wakeLanes(n.Payload)
	}
}

// maintain runs the janitor and samples the table statistics.
func (d *database) maintain(ctx context.Context) {
	cfg := d.r.cfg
	janitor := time.NewTicker(cfg.JanitorInterval)
	defer janitor.Stop()
	stats := time.NewTicker(cfg.StatsInterval)
	defer stats.Stop()
	// Sample at once, so that the gauges exist from the start.
	checked := d.checkAccess(ctx)
	if err := d.sampleStats(ctx); err != nil && ctx.Err() == nil {
		d.health.fail(err)
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-janitor.C:
			if err := d.deletePublished(ctx); err != nil && ctx.Err() == nil {
				d.health.fail(err)
			}
		case <-stats.C:
			if !checked {
				checked = d.checkAccess(ctx)
			}
			if err := d.sampleStats(ctx); err != nil && ctx.Err() == nil {
				d.health.fail(err)
			}
		}
	}
}

// deletePublished deletes every row published before the retention, in
// statements of janitorBatch rows so that no statement holds many locks or
// produces a burst of WAL.
func (d *database) deletePublished(ctx context.Context) error {
	for {
		n, err := d.q.DeletePublished(ctx, outboxdb.DeletePublishedParams{
			RetentionMs: d.r.cfg.Retention.Milliseconds(),
			MaxRows:     janitorBatch,
		})
		if err != nil {
			return fmt.Errorf("janitor: %w", err)
		}
		d.health.ok()
		d.r.metrics.deleted.WithLabelValues(d.name).Add(float64(n))
		d.r.metrics.rows.WithLabelValues(d.name, opDeleted).Add(float64(n))
		if n < janitorBatch {
			return nil
		}
	}
}

// checkAccess logs, once the outbox table exists, what the relay's role may
// do in this database, and warns when that is more than the relay needs
// (outbox.RelayAccess): a superuser, an owner, or a role that may insert
// outbox rows or read business tables. It reports whether it could tell;
// an error is left to sampleStats, which meets it too.
func (d *database) checkAccess(ctx context.Context) bool {
	p, err := postgres.ReadPrivileges(ctx, d.pool)
	if err != nil {
		return false
	}
	if _, ok := p.Tables[outbox.Table]; !ok {
		return false // not migrated yet
	}
	d.log.Info("outbox access", "role", p.Role, "superuser", p.Superuser,
		"outbox", p.Tables[outbox.Table], "outbox_lanes", p.Tables[outbox.LanesTable])
	if extra := outbox.RelayExcess(p); len(extra) > 0 {
		d.log.Warn("the relay's role holds more than it needs in this database: connect as goodgo_relay (README \"Database roles\")",
			"role", p.Role, "excess", extra)
	}
	return true
}

func (d *database) sampleStats(ctx context.Context) error {
	s, err := d.q.TableStats(ctx)
	if err != nil {
		return fmt.Errorf("table stats: %w", err)
	}
	age, err := d.q.OldestPendingAge(ctx, outbox.Lanes)
	if err != nil {
		return fmt.Errorf("oldest pending: %w", err)
	}
	d.health.ok()
	m := d.r.metrics
	m.tableSize.WithLabelValues(d.name, "pending").Set(float64(s.Pending))
	m.tableSize.WithLabelValues(d.name, "published").Set(float64(s.Published))
	m.tableSize.WithLabelValues(d.name, "parked").Set(float64(s.Parked))
	m.lag.WithLabelValues(d.name).Set(max(age, 0))
	return nil
}

// health tracks whether the database answers and logs only the changes, so
// a database that is down for an hour writes two lines, not thousands.
type health struct {
	log     *slog.Logger
	mu      sync.Mutex
	known   bool
	lastErr error
}

func (h *health) ok() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known || h.lastErr != nil {
		h.log.Info("outbox database available")
	}
	h.known, h.lastErr = true, nil
}

func (h *health) fail(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known || h.lastErr == nil {
		h.log.Warn("outbox database unavailable; retrying with backoff", "reason", describe(err), "error", err.Error())
	}
	h.known, h.lastErr = true, err
}

func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.known {
		return errors.New("not reached yet")
	}
	return h.lastErr
}

// describe names the usual reasons an outbox database is not usable.
func describe(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "3D000":
			return "database does not exist yet (its service creates it)"
		case "42P01":
			return "outbox table missing (its service has not migrated yet)"
		}
		return "database error " + pgErr.Code
	}
	return "database unreachable"
}

package projection

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
)

// RebuildConfig configures Rebuild.
type RebuildConfig struct {
	Brokers []string
	// Topics default to the order, payment and inventory topics.
	Topics []string
	// GroupID is the rebuild's own consumer group, new for each rebuild
	// so that it reads from the start of the topics (default
	// order-read-rebuild-<unix time>). It also names the rebuild's inbox
	// rows, which are deleted after the swap.
	GroupID  string
	MaxBatch int
	// Dialer and Transport reach the brokers (TLS, SASL); nil: plaintext.
	Dialer    *kafka.Dialer
	Transport *kafka.Transport
	// Role, when not empty, is granted on the shadow table what the
	// service's role holds on the view (db/orderread 000006).
	Role string
}

// RebuildStats says what a rebuild did.
type RebuildStats struct {
	// Orders is the number of rows of the new view.
	Orders int64
	// Took is how long the rebuild took; Swap how long the swap held
	// writers back.
	Took, Swap time.Duration
}

// Rebuild builds a fresh view from the start of the topics into
// ShadowTable while the current view keeps serving and the live projector
// keeps writing it, then swaps the two in one transaction:
//
//  1. create ShadowTable like order_views (columns, constraints, indexes);
//  2. note the end offset of every partition, and project from the first
//     offset with a new consumer group into ShadowTable until those
//     offsets are applied;
//  3. lock order_views against writers (readers go on), merge into the
//     shadow what the live projector applied meanwhile — per source, the
//     newer version wins, so no row goes backwards — and rename: the
//     shadow becomes order_views, its indexes take the canonical names;
//     the old table is dropped.
//
// Queries wait only for the renames (milliseconds) and never fail; the
// live projector's next batch writes the new table. It needs the topics to
// hold every event since the first (see docs/design.md "CQRS read side").
// It runs as the read database's owner (DDL); one rebuild at a time.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, keys *keyring.Keyring, cfg RebuildConfig, m *Metrics, logger *slog.Logger) (RebuildStats, error) {
	start := time.Now()
	var stats RebuildStats
	logger = logs.OrDiscard(logger)
	if cfg.GroupID == "" {
		cfg.GroupID = fmt.Sprintf("order-read-rebuild-%d", start.Unix())
	}
	if len(cfg.Topics) == 0 {
		cfg.Topics = event.Topics
	}
	if err := createShadow(ctx, pool, cfg.Role); err != nil {
		return stats, err
	}
	ends, err := endOffsets(ctx, cfg)
	if err != nil {
		return stats, err
	}
	logger.InfoContext(ctx, "rebuild: projecting into the shadow table", "group", cfg.GroupID, "partitions", len(ends))

	store, err := NewStore(pool, ShadowTable, cfg.GroupID, keys)
	if err != nil {
		return stats, err
	}
	caughtUp := make(chan struct{})
	var mu sync.Mutex
	remaining := map[Partition]int64{}
	for p, end := range ends {
		if end > 0 {
			remaining[p] = end - 1 // the last offset to apply
		}
	}
	if len(remaining) == 0 {
		close(caughtUp)
	}
	p, err := New(Config{Config: inbox.Config{Brokers: cfg.Brokers, GroupID: cfg.GroupID, Topics: cfg.Topics}, MaxBatch: cfg.MaxBatch}, store, m,
		Options{Logger: logger, Dialer: cfg.Dialer, OnCommit: func(high map[Partition]int64) {
			mu.Lock()
			defer mu.Unlock()
			for part, off := range high {
				if last, ok := remaining[part]; ok && off >= last {
					delete(remaining, part)
					if len(remaining) == 0 {
						close(caughtUp)
					}
				}
			}
		}})
	if err != nil {
		return stats, err
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	select {
	case <-caughtUp:
	case <-ctx.Done():
	}
	stop()
	if err := <-done; err != nil {
		return stats, err
	}
	if ctx.Err() != nil {
		return stats, fmt.Errorf("projection: rebuild stopped before it caught up: %w", ctx.Err())
	}
	swapStart := time.Now()
	if stats.Orders, err = swap(ctx, pool); err != nil {
		return stats, err
	}
	stats.Swap = time.Since(swapStart)
	// The rebuild's processed ids served only the rebuild.
	if _, err := pool.Exec(ctx, `DELETE FROM inbox WHERE consumer = $1`, cfg.GroupID); err != nil {
		logger.WarnContext(ctx, "rebuild: deleting the rebuild's inbox rows failed", "group", cfg.GroupID, "error", err.Error())
	}
	stats.Took = time.Since(start)
	logger.InfoContext(ctx, "rebuild: swapped", "orders", stats.Orders, "took", stats.Took.String(), "swap", stats.Swap.String())
	return stats, nil
}

func createShadow(ctx context.Context, pool *pgxpool.Pool, role string) error {
	sql := `DROP TABLE IF EXISTS ` + ShadowTable + `; CREATE TABLE ` + ShadowTable + ` (LIKE ` + Table + ` INCLUDING ALL);`
	if role != "" {
		sql += ` GRANT SELECT, INSERT, UPDATE ON ` + ShadowTable + ` TO ` + pgx.Identifier{role}.Sanitize() + `;`
	}
	if _, err := pool.Exec(ctx, sql); err != nil {
		return fmt.Errorf("projection: create the shadow table: %w", err)
	}
	return nil
}

// endOffsets returns the next offset of every partition of the topics.
func endOffsets(ctx context.Context, cfg RebuildConfig) (map[Partition]int64, error) {
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second}
	if cfg.Transport != nil {
		client.Transport = cfg.Transport
	}
	meta, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: cfg.Topics})
	if err != nil {
		return nil, fmt.Errorf("projection: topic metadata: %w", err)
	}
	req := &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{}}
	for _, t := range meta.Topics {
		if t.Error != nil {
			return nil, fmt.Errorf("projection: topic %s: %w", t.Name, t.Error)
		}
		for _, p := range t.Partitions {
			req.Topics[t.Name] = append(req.Topics[t.Name], kafka.LastOffsetOf(p.ID))
		}
	}
	resp, err := client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("projection: end offsets: %w", err)
	}
	out := map[Partition]int64{}
	for topic, parts := range resp.Topics {
		for _, p := range parts {
			if p.Error != nil {
				return nil, fmt.Errorf("projection: end offset of %s/%d: %w", topic, p.Partition, p.Error)
			}
			out[Partition{topic, p.Partition}] = p.LastOffset
		}
	}
	return out, nil
}

// merge is the upsert of a live row into the shadow: per source, the
// newer version wins.
const merge = `
INSERT INTO ` + ShadowTable + ` AS s SELECT * FROM ` + Table + `
ON CONFLICT (order_id) DO UPDATE SET
  customer_id   = CASE WHEN excluded.order_version > s.order_version THEN excluded.customer_id ELSE s.customer_id END,
  status        = CASE WHEN excluded.order_version > s.order_version THEN excluded.status ELSE s.status END,
  items         = CASE WHEN excluded.order_version > s.order_version THEN excluded.items ELSE s.items END,
  currency_code = CASE WHEN excluded.order_version > s.order_version THEN excluded.currency_code ELSE s.currency_code END,
  total_minor   = CASE WHEN excluded.order_version > s.order_version THEN excluded.total_minor ELSE s.total_minor END,
  cancel_reason = CASE WHEN excluded.order_version > s.order_version THEN excluded.cancel_reason ELSE s.cancel_reason END,
  created_at    = CASE WHEN excluded.order_version > s.order_version THEN excluded.created_at ELSE s.created_at END,
  order_version = GREATEST(excluded.order_version, s.order_version),
  payment_status = CASE WHEN excluded.payment_version > s.payment_version THEN excluded.payment_status ELSE s.payment_status END,
  payment_id     = CASE WHEN excluded.payment_version > s.payment_version THEN excluded.payment_id ELSE s.payment_id END,
  payment_reason = CASE WHEN excluded.payment_version > s.payment_version THEN excluded.payment_reason ELSE s.payment_reason END,
  payment_version = GREATEST(excluded.payment_version, s.payment_version),
  inventory_status = CASE WHEN excluded.inventory_version > s.inventory_version THEN excluded.inventory_status ELSE s.inventory_status END,
  reservation_id   = CASE WHEN excluded.inventory_version > s.inventory_version THEN excluded.reservation_id ELSE s.reservation_id END,
  inventory_reason = CASE WHEN excluded.inventory_version > s.inventory_version THEN excluded.inventory_reason ELSE s.inventory_reason END,
  inventory_version = GREATEST(excluded.inventory_version, s.inventory_version),
  updated_at   = GREATEST(excluded.updated_at, s.updated_at),
  projected_at = GREATEST(excluded.projected_at, s.projected_at)`

// renameIndexes gives the shadow's indexes the names of the view's
// matching ones (same definition), whose names get "_old".
const renameIndexes = `
DO $$
DECLARE r record;
BEGIN
  FOR r IN
    SELECT o.indexname AS live, n.indexname AS shadow
    FROM pg_indexes o JOIN pg_indexes n
      ON replace(replace(o.indexdef, o.indexname, '?'), ' ON ' || o.schemaname || '.' || o.tablename || ' ', ' ON ? ')
       = replace(replace(n.indexdef, n.indexname, '?'), ' ON ' || n.schemaname || '.' || n.tablename || ' ', ' ON ? ')
     AND o.schemaname = n.schemaname
    WHERE o.tablename = '` + Table + `' AND n.tablename = '` + ShadowTable + `' AND o.schemaname = current_schema()
  LOOP
    EXECUTE format('ALTER INDEX %I RENAME TO %I', r.live, left(r.live, 59) || '_old');
    EXECUTE format('ALTER INDEX %I RENAME TO %I', r.shadow, r.live);
  END LOOP;
END
$$`

// swap merges and renames in one transaction; it returns the new view's
// row count.
func swap(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	tx, err := postgres.Begin(ctx, pool)
	if err != nil {
		return 0, fmt.Errorf("projection: swap: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// EXCLUSIVE: the live projector waits, queries go on reading the
	// current view while the merge runs.
	for _, stmt := range []string{
		`SET LOCAL lock_timeout = '30s'`,
		`LOCK TABLE ` + Table + ` IN EXCLUSIVE MODE`,
		`LOCK TABLE ` + ShadowTable + ` IN EXCLUSIVE MODE`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("projection: swap: %w", err)
		}
	}
	if _, err := tx.Exec(ctx, merge); err != nil {
		return 0, fmt.Errorf("projection: swap: merge: %w", err)
	}
	var n int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+ShadowTable).Scan(&n); err != nil {
		return 0, fmt.Errorf("projection: swap: count: %w", err)
	}
	// From here queries wait (ACCESS EXCLUSIVE) until the commit.
	for _, stmt := range []string{
		renameIndexes,
		`ALTER TABLE ` + Table + ` RENAME TO order_views_old`,
		`ALTER TABLE ` + ShadowTable + ` RENAME TO ` + Table,
		`DROP TABLE order_views_old`,
	} {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return 0, fmt.Errorf("projection: swap: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("projection: swap: commit: %w", err)
	}
	return n, nil
}

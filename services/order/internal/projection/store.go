package projection

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/segmentio/kafka-go"

	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/postgres"
)

// Table is the view's table; a rebuild writes to ShadowTable and swaps.
const (
	Table       = "order_views"
	ShadowTable = "order_views_rebuild"
)

// Message is one fetched Kafka message with its decoded event, or why it
// cannot be applied.
type Message struct {
	Kafka  kafka.Message
	Change Change
	// Err is set for a message that can never be applied (bad envelope,
	// malformed payload): it is parked.
	Err error
}

// Outcome counts what ApplyBatch did with a batch's messages.
type Outcome struct {
	Applied, Stale, Duplicate, Parked int
	// Committed is when the batch's transaction committed.
	Committed time.Time
	// AppliedAt are the occurred-at times of the applied events, for the
	// lag metric.
	AppliedAt []time.Time
	// ParkedEvents are the events parked, with why.
	ParkedEvents []ParkedEvent
}

// ParkedEvent is an event the batch parked.
type ParkedEvent struct {
	Event inbox.Event
	Cause string
}

// Store writes batches of events into a view table in one transaction
// each. It is safe for concurrent use: several projector replicas (and the
// live projector beside a rebuild) may write at once, since a batch locks
// its orders (transaction-scoped advisory locks, taken in one sorted
// statement, so two batches never deadlock) before it reads and rewrites
// them.
type Store struct {
	pool     *pgxpool.Pool
	table    string // quoted identifier
	consumer string
	keys     *keyring.Keyring
}

// NewStore returns a Store writing to table, recording events in the inbox
// tables under consumer and sealing parked payloads with keys.
func NewStore(pool *pgxpool.Pool, table, consumer string, keys *keyring.Keyring) (*Store, error) {
	if pool == nil || keys == nil || table == "" || consumer == "" {
		return nil, fmt.Errorf("projection: NewStore needs a pool, a table, a consumer and keys")
	}
	return &Store{pool: pool, table: pgx.Identifier{table}.Sanitize(), consumer: consumer, keys: keys}, nil
}

// aggregate identifies an event's source aggregate, the unit of parking.
type aggregate struct{ typ, id string }

// ApplyBatch applies msgs, in order, in one transaction: it skips events
// already recorded in the inbox or parked, parks malformed ones (and
// later events of an aggregate with an unresolved parked event, so that
// the aggregate's order holds), records the others in the inbox and folds
// them into their orders' rows. An error means nothing was written; it is
// transient (the database), and the batch may be applied again.
func (s *Store) ApplyBatch(ctx context.Context, msgs []Message) (Outcome, error) {
	var out Outcome
	tx, err := postgres.Begin(ctx, s.pool)
	if err != nil {
		return out, fmt.Errorf("projection: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	blocked, parkedIDs, err := s.parkedState(ctx, tx, msgs)
	if err != nil {
		return out, err
	}
	// Pass 1: park what must be parked, pick the candidates.
	seen := make(map[uuid.UUID]bool, len(msgs))
	cands := make([]Message, 0, len(msgs))
	for _, m := range msgs {
		ev := m.Change.Event
		if parkedIDs[ev.ID] || seen[ev.ID] {
			out.Duplicate++
			continue
		}
		seen[ev.ID] = true
		agg := aggregate{ev.AggregateType, ev.AggregateID}
		var cause error
		switch {
		case m.Err != nil:
			cause = m.Err
		case blocked[agg] != "":
			cause = fmt.Errorf("held behind parked event %s of the same aggregate", blocked[agg])
		}
		if cause != nil {
			if err := inbox.Park(ctx, tx, s.keys, s.consumer, m.Kafka, ev, cause); err != nil {
				return Outcome{}, fmt.Errorf("projection: park %s: %w", ev.ID, err)
			}
			if blocked[agg] == "" {
				blocked[agg] = ev.ID.String()
			}
			out.Parked++
			out.ParkedEvents = append(out.ParkedEvents, ParkedEvent{Event: ev, Cause: cause.Error()})
			continue
		}
		cands = append(cands, m)
	}
	fresh, err := s.record(ctx, tx, cands)
	if err != nil {
		return Outcome{}, err
	}
	// Pass 2: fold the events not seen before into their rows.
	var ids []uuid.UUID
	for _, m := range cands {
		if fresh[m.Change.Event.ID] {
			ids = append(ids, m.Change.OrderID)
		}
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return slices.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)
	views, err := s.lockAndLoad(ctx, tx, ids)
	if err != nil {
		return Outcome{}, err
	}
	dirty := map[uuid.UUID]bool{}
	for _, m := range cands {
		c := m.Change
		if !fresh[c.Event.ID] {
			out.Duplicate++
			continue
		}
		v := views[c.OrderID]
		if v == nil {
			v = &View{OrderID: c.OrderID}
			views[c.OrderID] = v
		}
		if c.Apply(v) {
			dirty[c.OrderID] = true
			out.Applied++
			out.AppliedAt = append(out.AppliedAt, c.Event.OccurredAt)
		} else {
			out.Stale++
		}
	}
	if err := s.upsert(ctx, tx, views, dirty); err != nil {
		return Outcome{}, err
	}
	if err := tx.Commit(ctx); err != nil {
		return Outcome{}, fmt.Errorf("projection: commit: %w", err)
	}
	out.Committed = time.Now()
	return out, nil
}

// parkedState returns, for the batch's aggregates, the id of an unresolved
// parked event each (events behind it are parked too), and which of the
// batch's events were parked before (redeliveries, skipped).
func (s *Store) parkedState(ctx context.Context, tx pgx.Tx, msgs []Message) (map[aggregate]string, map[uuid.UUID]bool, error) {
	aggIDs := make([]string, 0, len(msgs))
	evIDs := make([][16]byte, 0, len(msgs))
	for _, m := range msgs {
		aggIDs = append(aggIDs, m.Change.Event.AggregateID)
		evIDs = append(evIDs, m.Change.Event.ID)
	}
	rows, err := tx.Query(ctx, `
SELECT event_id, aggregate_type, aggregate_id, resolved_at IS NULL
FROM inbox_parked
WHERE consumer = $1
  AND ((resolved_at IS NULL AND aggregate_id = ANY($2::text[])) OR event_id = ANY($3::uuid[]))
ORDER BY id`, s.consumer, aggIDs, evIDs)
	if err != nil {
		return nil, nil, fmt.Errorf("projection: read parked events: %w", err)
	}
	defer rows.Close()
	blocked := map[aggregate]string{}
	ids := map[uuid.UUID]bool{}
	for rows.Next() {
		var id uuid.UUID
		var agg aggregate
		var open bool
		if err := rows.Scan(&id, &agg.typ, &agg.id, &open); err != nil {
			return nil, nil, fmt.Errorf("projection: read parked events: %w", err)
		}
		ids[id] = true
		if open && blocked[agg] == "" {
			blocked[agg] = id.String()
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("projection: read parked events: %w", err)
	}
	return blocked, ids, nil
}

// record inserts the candidates' event ids into the inbox in one
// statement and returns those that were not there: the others are
// redeliveries.
func (s *Store) record(ctx context.Context, tx pgx.Tx, cands []Message) (map[uuid.UUID]bool, error) {
	fresh := make(map[uuid.UUID]bool, len(cands))
	if len(cands) == 0 {
		return fresh, nil
	}
	n := len(cands)
	ids := make([][16]byte, n)
	types, aggTypes, aggIDs := make([]string, n), make([]string, n), make([]string, n)
	versions := make([]int64, n)
	for i, m := range cands {
		ev := m.Change.Event
		ids[i], types[i], aggTypes[i], aggIDs[i], versions[i] = ev.ID, ev.Type, ev.AggregateType, ev.AggregateID, ev.AggregateVersion
	}
	rows, err := tx.Query(ctx, `
INSERT INTO inbox (consumer, event_id, event_type, aggregate_type, aggregate_id, aggregate_version)
SELECT $1, * FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::bigint[])
ON CONFLICT (consumer, event_id) DO NOTHING
RETURNING event_id`, s.consumer, ids, types, aggTypes, aggIDs, versions)
	if err != nil {
		return nil, fmt.Errorf("projection: record events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("projection: record events: %w", err)
		}
		fresh[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("projection: record events: %w", err)
	}
	return fresh, nil
}

// viewColumns are the columns ApplyBatch reads and writes, in this order.
const viewColumns = `order_id, customer_id, status, items, currency_code, total_minor, cancel_reason,
 payment_status, payment_id, payment_reason, inventory_status, reservation_id, inventory_reason,
 order_version, payment_version, inventory_version, created_at, updated_at`

// lockAndLoad locks ids (sorted) for the transaction and reads their rows.
func (s *Store) lockAndLoad(ctx context.Context, tx pgx.Tx, ids []uuid.UUID) (map[uuid.UUID]*View, error) {
	views := make(map[uuid.UUID]*View, len(ids))
	if len(ids) == 0 {
		return views, nil
	}
	raw := rawUUIDs(ids)
	// One lock per order whichever table is written, so that a rebuild's
	// swap and the live projector meet in a known order; ids are sorted
	// and locked in that order by one statement.
	if _, err := tx.Exec(ctx, `SELECT count(pg_advisory_xact_lock(k)) FROM
 (SELECT hashtextextended(id::text, 7) AS k FROM unnest($1::uuid[]) AS id ORDER BY 1) AS locks`, raw); err != nil {
		return nil, fmt.Errorf("projection: lock orders: %w", err)
	}
	// FOR UPDATE takes the table in ROW SHARE mode, which a rebuild's swap
	// (EXCLUSIVE, then ACCESS EXCLUSIVE to rename) conflicts with: this
	// transaction waits for a swap under way before it holds anything on
	// the table. A plain SELECT would be let in beside the swap, and its
	// INSERT would then wait for the swap while the swap's rename waits
	// for the SELECT's lock: a deadlock.
	rows, err := tx.Query(ctx, `SELECT `+viewColumns+` FROM `+s.table+` WHERE order_id = ANY($1::uuid[]) FOR UPDATE`, raw)
	if err != nil {
		return nil, fmt.Errorf("projection: read views: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		v, err := scanView(rows)
		if err != nil {
			return nil, fmt.Errorf("projection: read views: %w", err)
		}
		views[v.OrderID] = &v
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("projection: read views: %w", err)
	}
	return views, nil
}

func scanView(row pgx.Row) (View, error) {
	var v View
	var items []byte
	err := row.Scan(&v.OrderID, &v.CustomerID, &v.Status, &items, &v.CurrencyCode, &v.TotalMinor, &v.CancelReason,
		&v.PaymentStatus, &v.PaymentID, &v.PaymentReason, &v.InventoryStatus, &v.ReservationID, &v.InventoryReason,
		&v.OrderVersion, &v.PaymentVersion, &v.InventoryVersion, &v.CreatedAt, &v.UpdatedAt)
	if err != nil {
		return View{}, err
	}
	if err := json.Unmarshal(items, &v.Items); err != nil {
		return View{}, fmt.Errorf("order %s: items: %w", v.OrderID, err)
	}
	return v, nil
}

// upsert writes the dirty rows in one statement.
func (s *Store) upsert(ctx context.Context, tx pgx.Tx, views map[uuid.UUID]*View, dirty map[uuid.UUID]bool) error {
	if len(dirty) == 0 {
		return nil
	}
	n := len(dirty)
	var (
		ids                                                   = make([]uuid.UUID, 0, n)
		customers, statuses, items, currencies, cancelReasons []string
		payStatus, payIDs, payReasons                         []string
		invStatus, resIDs, invReasons                         []string
		totals, ov, pv, iv                                    []int64
		created, updated                                      []time.Time
	)
	for id := range dirty {
		v := views[id]
		it := v.Items
		if it == nil {
			it = []Item{}
		}
		b, err := json.Marshal(it)
		if err != nil {
			return fmt.Errorf("projection: items of %s: %w", id, err)
		}
		ids = append(ids, id)
		customers, statuses, items = append(customers, v.CustomerID), append(statuses, v.Status), append(items, string(b))
		currencies, totals, cancelReasons = append(currencies, v.CurrencyCode), append(totals, v.TotalMinor), append(cancelReasons, v.CancelReason)
		payStatus, payIDs, payReasons = append(payStatus, v.PaymentStatus), append(payIDs, v.PaymentID), append(payReasons, v.PaymentReason)
		invStatus, resIDs, invReasons = append(invStatus, v.InventoryStatus), append(resIDs, v.ReservationID), append(invReasons, v.InventoryReason)
		ov, pv, iv = append(ov, v.OrderVersion), append(pv, v.PaymentVersion), append(iv, v.InventoryVersion)
		created, updated = append(created, v.CreatedAt), append(updated, v.UpdatedAt)
	}
	// Sent with the COMMIT: nothing reads its result.
	_, err := postgres.Pipelined(tx).Exec(ctx, `
INSERT INTO `+s.table+` (`+viewColumns+`, projected_at)
SELECT u.*, now() FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], $6::bigint[], $7::text[],
  $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
  $14::bigint[], $15::bigint[], $16::bigint[], $17::timestamptz[], $18::timestamptz[]) AS u
ON CONFLICT (order_id) DO UPDATE SET
  customer_id = excluded.customer_id, status = excluded.status, items = excluded.items,
  currency_code = excluded.currency_code, total_minor = excluded.total_minor, cancel_reason = excluded.cancel_reason,
  payment_status = excluded.payment_status, payment_id = excluded.payment_id, payment_reason = excluded.payment_reason,
  inventory_status = excluded.inventory_status, reservation_id = excluded.reservation_id,
  inventory_reason = excluded.inventory_reason, order_version = excluded.order_version,
  payment_version = excluded.payment_version, inventory_version = excluded.inventory_version,
  created_at = excluded.created_at, updated_at = excluded.updated_at, projected_at = excluded.projected_at`,
		ids, customers, statuses, items, currencies, totals, cancelReasons,
		payStatus, payIDs, payReasons, invStatus, resIDs, invReasons,
		ov, pv, iv, created, updated)
	if err != nil {
		return fmt.Errorf("projection: write views: %w", err)
	}
	return nil
}

// rawUUIDs are ids as pgx encodes them without a detour through text
// (uuid.UUID is a driver.Valuer, which pgx calls element by element).
func rawUUIDs(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}

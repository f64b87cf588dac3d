package postgres_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/order"
	"github.com/goodgo/goodgo/services/order/internal/postgres"
)

type testBundle struct {
	pool *pgxpool.Pool
	keys *keyring.Keyring // the outbox's
	pii  *keyring.Keyring // the addresses'
	repo *postgres.Repository
}

func setup(t *testing.T) testBundle {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.Order)
	keys := newKeyring(t, "k1")
	pii := newKeyring(t, "p1")
	w, err := outbox.NewWriter(keys, prometheus.NewRegistry())
	require.NoError(t, err)
	return testBundle{pool: pool, keys: keys, pii: pii, repo: newRepository(t, pool, w, pii)}
}

// testKeys holds the run's key of each key id, so that keyrings built
// apart (before and after a rotation) agree on them.
var testKeys sync.Map

// newKeyring is a keyring of the run's keys with ids, the first active.
func newKeyring(t *testing.T, ids ...string) *keyring.Keyring {
	t.Helper()
	keys := make(map[string][]byte)
	for _, id := range ids {
		key := make([]byte, keyring.KeySize)
		_, _ = rand.Read(key)
		k, _ := testKeys.LoadOrStore(id, key)
		keys[id] = k.([]byte)
	}
	kr, err := keyring.New(ids[0], keys)
	require.NoError(t, err)
	return kr
}

func newRepository(t *testing.T, pool *pgxpool.Pool, ob postgres.Outbox, pii *keyring.Keyring) *postgres.Repository {
	t.Helper()
	repo, err := postgres.NewRepository(pool, ob, pii)
	require.NoError(t, err)
	return repo
}

func newOrder(t *testing.T) order.Order {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	return order.Order{
		ID:         uuid.Must(uuid.NewV7()).String(),
		CustomerID: uuid.NewString(),
		Status:     order.StatusPending,
		Lines: []order.Line{
			{SKU: "SKU-1", Name: "Widget", Quantity: 2, UnitPrice: order.Money{Currency: "EUR", Minor: 1250}},
			{SKU: "SKU-2", Name: "Gadget", Quantity: 1, UnitPrice: order.Money{Currency: "EUR", Minor: 99}},
		},
		Total:           order.Money{Currency: "EUR", Minor: 2599},
		ShippingAddress: order.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "N1", CountryCode: "GB"},
		PaymentMethod:   "tok_visa",
		PlacedBy:        "user-1",
		Version:         1,
		CreatedAt:       now,
		UpdatedAt:       now,
	}
}

func newKey() []byte {
	k := sha256.Sum256([]byte(uuid.NewString()))
	return k[:]
}

// records returns the outbox rows of an order in id order, decrypted.
func (b testBundle) records(t *testing.T, orderID string) []outbox.Record {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT id, event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version, event_type,
		        content_type, payload, key_id, traceparent, tracestate, occurred_at, attempts
		 FROM outbox WHERE aggregate_id = $1 ORDER BY id`, orderID)
	require.NoError(t, err)
	recs, err := pgx.CollectRows(rows, pgx.RowToStructByName[outbox.Record])
	require.NoError(t, err)
	return recs
}

func (b testBundle) orderCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n))
	return n
}

func (b testBundle) outboxCount(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM outbox").Scan(&n))
	return n
}

func decode[M proto.Message](t *testing.T, keys *keyring.Keyring, r outbox.Record, msg M) M {
	t.Helper()
	require.NoError(t, outbox.Decrypt(keys, &r))
	require.NoError(t, proto.Unmarshal(r.Payload, msg))
	return msg
}

func TestCreate(t *testing.T) {
	t.Parallel()

	t.Run("stores the order and its encrypted order.created.v1 event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := newOrder(t)
		stored, created, err := b.repo.Create(context.Background(), o, newKey())
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, o, stored)

		got, err := b.repo.Get(context.Background(), o.ID)
		require.NoError(t, err)
		require.Equal(t, o, got)

		recs := b.records(t, o.ID)
		require.Len(t, recs, 1)
		r := recs[0]
		require.Equal(t, event.TopicOrder, r.Topic)
		require.Equal(t, event.AggregateOrder, r.AggregateType)
		require.Equal(t, event.OrderCreated, r.EventType)
		require.Equal(t, int64(1), r.AggregateVersion)
		require.Equal(t, "k1", r.KeyID, "the payload holds an address: it must be encrypted")
		require.NotContains(t, string(r.Payload), "London")
		requireProto(t, &orderv1.OrderCreated{
			OrderId:    o.ID,
			CustomerId: o.CustomerID,
			Items: []*commonv1.LineItem{
				{Sku: "SKU-1", Quantity: 2, Name: "Widget", UnitPrice: &commonv1.Money{CurrencyCode: "EUR", AmountMinor: 1250}},
				{Sku: "SKU-2", Quantity: 1, Name: "Gadget", UnitPrice: &commonv1.Money{CurrencyCode: "EUR", AmountMinor: 99}},
			},
			Total:           &commonv1.Money{CurrencyCode: "EUR", AmountMinor: 2599},
			ShippingAddress: &orderv1.Address{Name: "Ada", Line1: "1 Main St", City: "London", PostalCode: "N1", CountryCode: "GB"},
			PaymentMethod:   "tok_visa",
			PlacedBy:        "user-1",
		}, decode(t, b.keys, r, &orderv1.OrderCreated{}))
	})

	t.Run("a second order with the same idempotency key returns the first", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key := newKey()
		first := newOrder(t)
		_, created, err := b.repo.Create(context.Background(), first, key)
		require.NoError(t, err)
		require.True(t, created)

		second := newOrder(t)
		got, created, err := b.repo.Create(context.Background(), second, key)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, first, got)
		require.Equal(t, 1, b.orderCount(t))
		require.Equal(t, 1, b.outboxCount(t))

		found, err := b.repo.FindByIdempotencyKey(context.Background(), key)
		require.NoError(t, err)
		require.Equal(t, first, found)
	})

	t.Run("concurrent creates with one key store exactly one order", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key := newKey()
		const n = 20
		var wg sync.WaitGroup
		results := make([]order.Order, n)
		createdCount := make([]bool, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				results[i], createdCount[i], errs[i] = b.repo.Create(context.Background(), newOrder(t), key)
			})
		}
		wg.Wait()
		winners := 0
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, results[0].ID, results[i].ID)
			if createdCount[i] {
				winners++
			}
		}
		require.Equal(t, 1, winners)
		require.Equal(t, 1, b.orderCount(t))
		require.Equal(t, 1, b.outboxCount(t))
	})

	t.Run("orders without a key do not collide", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for range 2 {
			_, created, err := b.repo.Create(context.Background(), newOrder(t), nil)
			require.NoError(t, err)
			require.True(t, created)
		}
		require.Equal(t, 2, b.orderCount(t))
	})

	t.Run("a transaction failing after the writes leaves neither order nor event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w, err := outbox.NewWriter(b.keys, prometheus.NewRegistry())
		require.NoError(t, err)
		failing := &failAfterAppend{w: w}
		repo := newRepository(t, b.pool, failing, b.pii)
		o := newOrder(t)
		_, _, err = repo.Create(context.Background(), o, newKey())
		require.ErrorIs(t, err, errInjected)
		require.Equal(t, 1, failing.appended, "both rows were written before the failure")

		_, err = b.repo.Get(context.Background(), o.ID)
		require.ErrorIs(t, err, order.ErrNotFound)
		require.Equal(t, 0, b.orderCount(t))
		require.Equal(t, 0, b.outboxCount(t))
	})

	t.Run("an outbox that cannot encrypt fails the whole write", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		w, err := outbox.NewWriter(nil, prometheus.NewRegistry()) // no keyring: PII events fail
		require.NoError(t, err)
		_, _, err = newRepository(t, b.pool, w, b.pii).Create(context.Background(), newOrder(t), newKey())
		require.ErrorIs(t, err, outbox.ErrNoKeyring)
		require.Equal(t, 0, b.orderCount(t))
	})
}

func TestGet(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.repo.Get(context.Background(), uuid.NewString())
	require.ErrorIs(t, err, order.ErrNotFound)
	_, err = b.repo.FindByIdempotencyKey(context.Background(), newKey())
	require.ErrorIs(t, err, order.ErrNotFound)
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	later := time.Now().UTC().Truncate(time.Microsecond).Add(time.Second)

	create := func(t *testing.T, b testBundle) order.Order {
		t.Helper()
		o, _, err := b.repo.Create(ctx, newOrder(t), newKey())
		require.NoError(t, err)
		return o
	}

	t.Run("writes the change, increments the version and appends the event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := create(t, b)
		got, err := b.repo.Update(ctx, o.ID, func(o *order.Order) (order.Change, error) { return o.Cancel("payment declined", later) })
		require.NoError(t, err)
		require.Equal(t, order.StatusCancelled, got.Status)
		require.Equal(t, "payment declined", got.CancelReason)
		require.Equal(t, int64(2), got.Version)
		require.Equal(t, later, got.UpdatedAt)

		stored, err := b.repo.Get(ctx, o.ID)
		require.NoError(t, err)
		require.Equal(t, got, stored)

		recs := b.records(t, o.ID)
		require.Len(t, recs, 2)
		require.Equal(t, event.OrderCancelled, recs[1].EventType)
		require.Equal(t, int64(2), recs[1].AggregateVersion)
		require.Empty(t, recs[1].KeyID, "a cancellation holds no personal data")
		requireProto(t, &orderv1.OrderCancelled{OrderId: o.ID, Reason: "payment declined"},
			decode(t, b.keys, recs[1], &orderv1.OrderCancelled{}))
	})

	t.Run("an address change is an encrypted event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := create(t, b)
		addr := order.Address{Name: "Ada", Line1: "2 Rue", City: "Paris", PostalCode: "75001", CountryCode: "FR"}
		got, err := b.repo.Update(ctx, o.ID, func(o *order.Order) (order.Change, error) { return o.ChangeShippingAddress(addr, later) })
		require.NoError(t, err)
		require.Equal(t, addr, got.ShippingAddress)
		recs := b.records(t, o.ID)
		require.Len(t, recs, 2)
		require.Equal(t, event.OrderShippingAddressChanged, recs[1].EventType)
		require.Equal(t, "k1", recs[1].KeyID)
		require.Equal(t, "Paris", decode(t, b.keys, recs[1], &orderv1.OrderShippingAddressChanged{}).GetShippingAddress().GetCity())
	})

	t.Run("no change writes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := create(t, b)
		got, err := b.repo.Update(ctx, o.ID, func(*order.Order) (order.Change, error) { return order.ChangeNone, nil })
		require.NoError(t, err)
		require.Equal(t, o, got)
		require.Len(t, b.records(t, o.ID), 1)
	})

	t.Run("the change's error is returned and nothing is written", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := create(t, b)
		boom := errors.New("boom")
		_, err := b.repo.Update(ctx, o.ID, func(o *order.Order) (order.Change, error) {
			o.Status = order.StatusConfirmed
			return order.ChangeConfirmed, boom
		})
		require.ErrorIs(t, err, boom)
		stored, err := b.repo.Get(ctx, o.ID)
		require.NoError(t, err)
		require.Equal(t, o, stored)
	})

	t.Run("a concurrent change between read and write is a conflict", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := create(t, b)
		_, err := b.repo.Update(ctx, o.ID, func(o *order.Order) (order.Change, error) {
			// Another writer commits after this read.
			_, err := b.pool.Exec(ctx, "UPDATE orders SET version = version + 1 WHERE id = $1", o.ID)
			require.NoError(t, err)
			return o.Confirm(later)
		})
		require.ErrorIs(t, err, optlock.ErrConflict)
		stored, err := b.repo.Get(ctx, o.ID)
		require.NoError(t, err)
		require.Equal(t, order.StatusPending, stored.Status)
		require.Len(t, b.records(t, o.ID), 1, "no event for a lost update")
	})

	t.Run("a transaction failing after the writes leaves neither change nor event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		o := create(t, b)
		w, err := outbox.NewWriter(b.keys, prometheus.NewRegistry())
		require.NoError(t, err)
		failing := &failAfterAppend{w: w}
		_, err = newRepository(t, b.pool, failing, b.pii).Update(ctx, o.ID, func(o *order.Order) (order.Change, error) { return o.Confirm(later) })
		require.ErrorIs(t, err, errInjected)
		require.Equal(t, 1, failing.appended)
		stored, err := b.repo.Get(ctx, o.ID)
		require.NoError(t, err)
		require.Equal(t, o, stored)
		require.Len(t, b.records(t, o.ID), 1)
	})

	t.Run("an unknown order is not found", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.repo.Update(ctx, uuid.NewString(), func(o *order.Order) (order.Change, error) { return o.Confirm(later) })
		require.ErrorIs(t, err, order.ErrNotFound)
	})
}

var errInjected = errors.New("injected failure after the outbox append")

// failAfterAppend appends for real, then fails: the transaction has written
// the business row and the outbox row when it is rolled back.
type failAfterAppend struct {
	w        *outbox.Writer
	appended int
}

func (f *failAfterAppend) Append(ctx context.Context, tx pgx.Tx, events ...outbox.Event) error {
	if err := f.w.Append(ctx, tx, events...); err != nil {
		return err
	}
	// Both rows are visible inside the transaction before it fails.
	var n int
	if err := tx.QueryRow(ctx, "SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM outbox)").Scan(&n); err != nil {
		return err
	}
	if n >= 2 {
		f.appended++
	}
	return errInjected
}

func requireProto(t *testing.T, want, got proto.Message) {
	t.Helper()
	require.True(t, proto.Equal(want, got), "want %v\ngot  %v", want, got)
}

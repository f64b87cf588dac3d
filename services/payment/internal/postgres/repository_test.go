package postgres_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
	"github.com/goodgo/goodgo/services/payment/internal/postgres"
)

type testBundle struct {
	pool *pgxpool.Pool
	repo *postgres.Repository
}

func setup(t *testing.T) testBundle {
	t.Helper()
	pool := newTestDB(t)
	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	return testBundle{pool: pool, repo: postgres.NewRepository(pool, w)}
}

var (
	now   = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	rules = payment.DeclineRules{AboveMinor: payment.DefaultDeclineAboveMinor}
)

func newPayment(t *testing.T, orderID payment.ID, minor int64, method string) payment.Payment {
	t.Helper()
	c, err := payment.NewCharge(orderID.String(), &payment.Money{Currency: "EUR", Minor: minor}, method)
	require.NoError(t, err)
	return payment.NewPayment(payment.ID(uuid.Must(uuid.NewV7())), c, rules, now)
}

func newOrderID() payment.ID { return payment.ID(uuid.Must(uuid.NewV7())) }

// newVoid is a VOIDED payment of orderID, as a compensation writes it.
func newVoid(orderID payment.ID, reason string) payment.Payment {
	return payment.Void(payment.ID(uuid.Must(uuid.NewV7())), orderID, "cust-1", reason, now)
}

// wrote returns the check of what a CreatePayment or VoidPayment returned:
// no error, whether it created the order's payment, and the order's
// payment, which is want.
func wrote(t *testing.T, want payment.Payment, created bool) func(payment.Payment, bool, error) {
	return func(stored payment.Payment, gotCreated bool, err error) {
		t.Helper()
		require.NoError(t, err)
		require.Equal(t, created, gotCreated, "created")
		require.Equal(t, want, stored)
	}
}

// requireFound checks that FindPayment returns want by its id and by its
// order.
func (b testBundle) requireFound(t *testing.T, want payment.Payment) {
	t.Helper()
	for _, ref := range []payment.Ref{{PaymentID: want.ID}, {OrderID: want.OrderID}} {
		got, err := b.repo.FindPayment(context.Background(), ref)
		require.NoError(t, err, "%+v", ref)
		require.Equal(t, want, got, "%+v", ref)
	}
}

type outboxRow struct {
	Topic, AggregateType, AggregateID, EventType, KeyID string
	AggregateVersion                                    int64
	Payload                                             []byte
}

func outboxRows(t *testing.T, pool *pgxpool.Pool, aggregateID payment.ID) []outboxRow {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT topic, aggregate_type, aggregate_id, event_type, key_id, aggregate_version, payload
		 FROM outbox WHERE aggregate_id = $1 ORDER BY id`, aggregateID.String())
	require.NoError(t, err)
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		require.NoError(t, rows.Scan(&r.Topic, &r.AggregateType, &r.AggregateID, &r.EventType, &r.KeyID, &r.AggregateVersion, &r.Payload))
		out = append(out, r)
	}
	require.NoError(t, rows.Err())
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func TestCreatePayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a captured payment is stored with its processed event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := newPayment(t, newOrderID(), 1999, "tok_visa")
		wrote(t, p, true)(b.repo.CreatePayment(ctx, p))
		b.requireFound(t, p)

		rows := outboxRows(t, b.pool, p.ID)
		require.Len(t, rows, 1)
		require.Equal(t, event.TopicPayment, rows[0].Topic)
		require.Equal(t, event.AggregatePayment, rows[0].AggregateType)
		require.Equal(t, event.PaymentProcessed, rows[0].EventType)
		require.EqualValues(t, 1, rows[0].AggregateVersion)
		require.Empty(t, rows[0].KeyID, "payment payloads carry no PII and are not encrypted")
		var ev paymentv1.PaymentProcessed
		require.NoError(t, proto.Unmarshal(rows[0].Payload, &ev))
		require.Equal(t, p.ID.String(), ev.GetPaymentId())
		require.Equal(t, p.OrderID.String(), ev.GetOrderId())
		require.Equal(t, "EUR", ev.GetAmount().GetCurrencyCode())
		require.EqualValues(t, 1999, ev.GetAmount().GetAmountMinor())
	})

	t.Run("a declined payment is stored with its declined event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := newPayment(t, newOrderID(), 1999, payment.TestCardDecline)
		stored, created, err := b.repo.CreatePayment(ctx, p)
		require.NoError(t, err)
		require.True(t, created)
		require.Equal(t, payment.StatusDeclined, stored.Status)
		rows := outboxRows(t, b.pool, p.ID)
		require.Len(t, rows, 1)
		require.Equal(t, event.PaymentDeclined, rows[0].EventType)
		var ev paymentv1.PaymentDeclined
		require.NoError(t, proto.Unmarshal(rows[0].Payload, &ev))
		require.Equal(t, payment.ReasonCardDeclined, ev.GetReason())
	})

	t.Run("a second payment for the order writes nothing and returns the first", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		order := newOrderID()
		first := newPayment(t, order, 500, "tok_visa")
		_, _, err := b.repo.CreatePayment(ctx, first)
		require.NoError(t, err)
		wrote(t, first, false)(b.repo.CreatePayment(ctx, newPayment(t, order, 700, payment.TestCardDecline)))
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM payments`))
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM outbox`))
	})

	t.Run("concurrent inserts for one order store exactly one payment", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		order := newOrderID()
		const n = 50
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ids     = map[payment.ID]int{}
			created int
			start   = make(chan struct{})
		)
		for range n {
			wg.Go(func() {
				p := newPayment(t, order, 500, "tok_visa")
				<-start
				stored, c, err := b.repo.CreatePayment(ctx, p)
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				ids[stored.ID]++
				if c {
					created++
				}
			})
		}
		close(start)
		wg.Wait()
		require.Equal(t, 1, created)
		require.Len(t, ids, 1, "every caller sees the same payment")
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM payments`))
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM outbox`))
	})

	t.Run("a transaction that fails after the business write leaves neither row", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		failOutboxInserts(t, b.pool)
		p := newPayment(t, newOrderID(), 500, "tok_visa")
		_, _, err := b.repo.CreatePayment(ctx, p)
		require.ErrorContains(t, err, "outbox insert refused by test")
		require.Equal(t, 0, count(t, b.pool, `SELECT count(*) FROM payments`))
		require.Equal(t, 0, count(t, b.pool, `SELECT count(*) FROM outbox`))
		_, err = b.repo.FindPayment(ctx, payment.Ref{OrderID: p.OrderID})
		require.ErrorIs(t, err, payment.ErrNotFound)
	})
}

func TestFindPaymentUnknown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.repo.FindPayment(context.Background(), payment.Ref{PaymentID: newOrderID()})
	require.ErrorIs(t, err, payment.ErrNotFound)
	_, err = b.repo.FindPayment(context.Background(), payment.Ref{OrderID: newOrderID()})
	require.ErrorIs(t, err, payment.ErrNotFound)
}

func TestVoidPayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("an order without a payment gets a VOIDED one, without an event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		v := newVoid(newOrderID(), "compensation")
		wrote(t, v, true)(b.repo.VoidPayment(ctx, v))
		b.requireFound(t, v)
		require.Zero(t, count(t, b.pool, `SELECT count(*) FROM outbox`))

		// The order's one payment is taken: a ProcessPayment finds it.
		wrote(t, v, false)(b.repo.CreatePayment(ctx, newPayment(t, v.OrderID, 900, "tok_visa")))
		wrote(t, v, false)(b.repo.VoidPayment(ctx, newVoid(v.OrderID, "again")))
	})

	t.Run("an order with a payment keeps it", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p, _, err := b.repo.CreatePayment(ctx, newPayment(t, newOrderID(), 900, "tok_visa"))
		require.NoError(t, err)
		wrote(t, p, false)(b.repo.VoidPayment(ctx, newVoid(p.OrderID, "late")))
	})

	t.Run("the schema keeps a VOIDED payment without amount, currency or refund", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		v, _, err := b.repo.VoidPayment(ctx, newVoid(newOrderID(), ""))
		require.NoError(t, err)
		for _, set := range []string{"amount_minor = 1", "currency_code = 'EUR'", "status = 'CAPTURED'"} {
			_, err := b.pool.Exec(ctx, `UPDATE payments SET `+set+` WHERE id = $1`, uuid.UUID(v.ID))
			require.ErrorContains(t, err, "check constraint", set)
		}
	})
}

func TestSaveRefund(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	later := now.Add(time.Hour)

	captured := func(t *testing.T, b testBundle) payment.Payment {
		t.Helper()
		p, _, err := b.repo.CreatePayment(ctx, newPayment(t, newOrderID(), 1200, "tok_visa"))
		require.NoError(t, err)
		return p
	}

	t.Run("a refund at the read version is stored with its event", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := captured(t, b)
		_, err := p.Refund("changed my mind", later)
		require.NoError(t, err)
		stored, err := b.repo.SaveRefund(ctx, p, 1)
		require.NoError(t, err)
		require.Equal(t, p, stored)
		require.Equal(t, payment.StatusRefunded, stored.Status)
		require.EqualValues(t, 1200, stored.Refunded)
		require.EqualValues(t, 2, stored.Version)

		rows := outboxRows(t, b.pool, p.ID)
		require.Len(t, rows, 2)
		require.Equal(t, event.PaymentRefunded, rows[1].EventType)
		require.EqualValues(t, 2, rows[1].AggregateVersion)
		var ev paymentv1.PaymentRefunded
		require.NoError(t, proto.Unmarshal(rows[1].Payload, &ev))
		require.EqualValues(t, 1200, ev.GetAmount().GetAmountMinor())
		require.Equal(t, "changed my mind", ev.GetReason())
	})

	t.Run("a refund at a stale version is a conflict and writes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := captured(t, b)
		first := p
		_, err := first.Refund("", later)
		require.NoError(t, err)
		_, err = b.repo.SaveRefund(ctx, first, 1)
		require.NoError(t, err)

		second := p
		_, err = second.Refund("", later)
		require.NoError(t, err)
		_, err = b.repo.SaveRefund(ctx, second, 1)
		require.ErrorIs(t, err, optlock.ErrConflict)
		require.Len(t, outboxRows(t, b.pool, p.ID), 2)
	})

	t.Run("a transaction that fails after the refund update leaves the payment captured", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := captured(t, b)
		failOutboxInserts(t, b.pool)
		_, err := p.Refund("", later)
		require.NoError(t, err)
		_, err = b.repo.SaveRefund(ctx, p, 1)
		require.ErrorContains(t, err, "outbox insert refused by test")
		got, err := b.repo.FindPayment(ctx, payment.Ref{PaymentID: p.ID})
		require.NoError(t, err)
		require.Equal(t, payment.StatusCaptured, got.Status)
		require.EqualValues(t, 1, got.Version)
		require.Len(t, outboxRows(t, b.pool, p.ID), 1)
	})

	t.Run("the schema refuses a refund larger than the capture", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		p := captured(t, b)
		_, err := b.pool.Exec(ctx, `UPDATE payments SET refunded_minor = amount_minor + 1 WHERE id = $1`, uuid.UUID(p.ID))
		require.ErrorContains(t, err, "check constraint")
	})
}

// failOutboxInserts makes every later outbox insert in pool's database fail,
// so that a transaction fails after its business write.
func failOutboxInserts(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(context.Background(), `
		CREATE FUNCTION refuse_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN RAISE EXCEPTION 'outbox insert refused by test'; END $$;
		CREATE TRIGGER refuse_outbox BEFORE INSERT ON outbox
			FOR EACH ROW EXECUTE FUNCTION refuse_outbox();`)
	require.NoError(t, err)
}

// assertNoError is require.NoError for goroutines other than the test's
// (FailNow must not be called there).
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}

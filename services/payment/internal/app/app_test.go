package app_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/services/payment/internal/app"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
	"github.com/goodgo/goodgo/services/payment/internal/postgres"
)

type testBundle struct {
	pool *pgxpool.Pool
	svc  *app.Service
	reg  *prometheus.Registry
}

func setup(t *testing.T) testBundle {
	t.Helper()
	pool := newTestDB(t)
	reg := prometheus.NewRegistry()
	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	m, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	svc := app.New(postgres.NewRepository(pool, w), payment.DeclineRules{AboveMinor: 10_000}, m,
		app.WithRetryPolicy(optlock.Policy{MaxAttempts: 10, Backoff: backoff.Policy{Min: time.Millisecond, Max: 10 * time.Millisecond, Jitter: backoff.FullJitter}}))
	return testBundle{pool: pool, svc: svc, reg: reg}
}

// The tests' callers: customer is who the saga charges and refunds for,
// operator reads any payment.
const customer = "cust-1"

var operator = caller.Identity{User: "ops-1", Roles: []string{caller.RoleOperator}}

func charge(t *testing.T, orderID string, currency string, minor int64, method string) payment.Charge {
	t.Helper()
	c, err := payment.NewCharge(orderID, &payment.Money{Currency: currency, Minor: minor}, method)
	require.NoError(t, err)
	c.CustomerID = customer
	return c
}

func newOrder() string { return uuid.Must(uuid.NewV7()).String() }

func events(t *testing.T, pool *pgxpool.Pool, p payment.Payment) []string {
	return servicetest.OutboxEvents(t, pool, p.ID.String())
}

func TestProcessPayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)

	t.Run("an ordinary payment is captured", func(t *testing.T) {
		t.Parallel()
		p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "USD", 999, "tok_visa"))
		require.NoError(t, err)
		require.Equal(t, payment.StatusCaptured, p.Status)
		require.EqualValues(t, 1, p.Version)
		require.Equal(t, []string{event.PaymentProcessed}, events(t, b.pool, p))
	})

	t.Run("the test card is declined and the decline is stored", func(t *testing.T) {
		t.Parallel()
		c := charge(t, newOrder(), "USD", 999, payment.TestCardDecline)
		p, err := b.svc.ProcessPayment(ctx, c)
		require.NoError(t, err)
		require.Equal(t, payment.StatusDeclined, p.Status)
		require.Equal(t, payment.ReasonCardDeclined, p.DeclineReason)
		got, err := b.svc.GetPayment(ctx, operator, payment.Ref{OrderID: c.OrderID})
		require.NoError(t, err)
		require.Equal(t, p, got)
		require.Equal(t, []string{event.PaymentDeclined}, events(t, b.pool, p))
	})

	t.Run("a payment is its customer's and the operators', nobody else's", func(t *testing.T) {
		t.Parallel()
		p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "USD", 999, "tok_visa"))
		require.NoError(t, err)
		require.Equal(t, customer, p.CustomerID)
		for _, who := range []caller.Identity{{User: customer}, operator, {Service: "orchestrator"}} {
			got, err := b.svc.GetPayment(ctx, who, payment.Ref{PaymentID: p.ID})
			require.NoError(t, err, who.String())
			require.Equal(t, p, got)
		}
		for _, who := range []caller.Identity{{User: "cust-2"}, {User: "cust-2", Roles: []string{"unknown"}}} {
			_, err := b.svc.GetPayment(ctx, who, payment.Ref{OrderID: p.OrderID})
			require.ErrorIs(t, err, payment.ErrNotFound, "like an unknown payment")
		}
	})

	t.Run("an amount above the configured limit is declined", func(t *testing.T) {
		t.Parallel()
		p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "USD", 10_001, "tok_visa"))
		require.NoError(t, err)
		require.Equal(t, payment.StatusDeclined, p.Status)
		require.Equal(t, payment.ReasonAmountLimit, p.DeclineReason)
	})

	t.Run("a repeat with the same amount returns the stored payment without a new event", func(t *testing.T) {
		t.Parallel()
		c := charge(t, newOrder(), "GBP", 250, "tok_visa")
		first, err := b.svc.ProcessPayment(ctx, c)
		require.NoError(t, err)
		c.Method = payment.TestCardDecline // the outcome is decided once
		again, err := b.svc.ProcessPayment(ctx, c)
		require.NoError(t, err)
		require.Equal(t, first, again)
		require.Equal(t, []string{event.PaymentProcessed}, events(t, b.pool, first))
	})

	t.Run("a repeat with another amount or currency is refused", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		_, err := b.svc.ProcessPayment(ctx, charge(t, order, "GBP", 250, "tok_visa"))
		require.NoError(t, err)
		_, err = b.svc.ProcessPayment(ctx, charge(t, order, "GBP", 251, "tok_visa"))
		require.ErrorIs(t, err, payment.ErrAmountMismatch)
		_, err = b.svc.ProcessPayment(ctx, charge(t, order, "EUR", 250, "tok_visa"))
		require.ErrorIs(t, err, payment.ErrAmountMismatch)
	})
}

func TestRefundPayment(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	captured := func(t *testing.T) payment.Payment {
		t.Helper()
		p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "CHF", 4200, "tok_visa"))
		require.NoError(t, err)
		return p
	}

	t.Run("a captured payment is refunded in full", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		r, err := b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "out of stock", customer)
		require.NoError(t, err)
		require.Equal(t, payment.StatusRefunded, r.Status)
		require.EqualValues(t, 4200, r.Refunded)
		require.EqualValues(t, 2, r.Version)
		require.Equal(t, "out of stock", r.RefundReason)
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, events(t, b.pool, p))
	})

	t.Run("refunding twice refunds once", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		first, err := b.svc.RefundPayment(ctx, payment.Ref{OrderID: p.OrderID}, "first", customer)
		require.NoError(t, err)
		second, err := b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "second", customer)
		require.NoError(t, err)
		require.Equal(t, first, second)
		require.Equal(t, "first", second.RefundReason)
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, events(t, b.pool, p))
	})

	t.Run("concurrent refunds of one payment all succeed and one writes", func(t *testing.T) {
		t.Parallel()
		p := captured(t)
		const n = 20
		var wg sync.WaitGroup
		results := make([]payment.Payment, n)
		errs := make([]error, n)
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				results[i], errs[i] = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "", customer)
			})
		}
		close(start)
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, payment.StatusRefunded, results[i].Status)
			require.EqualValues(t, 2, results[i].Version)
		}
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, events(t, b.pool, p))
	})

	t.Run("refunding a declined payment succeeds and changes nothing", func(t *testing.T) {
		t.Parallel()
		p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "CHF", 4200, payment.TestCardDecline))
		require.NoError(t, err)
		for _, ref := range []payment.Ref{{PaymentID: p.ID}, {OrderID: p.OrderID}} {
			r, err := b.svc.RefundPayment(ctx, ref, "saga compensation", customer)
			require.NoError(t, err)
			require.Equal(t, p, r)
		}
		require.Equal(t, []string{event.PaymentDeclined}, events(t, b.pool, p))
	})

	t.Run("an unknown payment id is not found", func(t *testing.T) {
		t.Parallel()
		id, _ := payment.ParseID(newOrder())
		_, err := b.svc.RefundPayment(ctx, payment.Ref{PaymentID: id}, "", customer)
		require.ErrorIs(t, err, payment.ErrNotFound)
		_, err = b.svc.GetPayment(ctx, operator, payment.Ref{PaymentID: id})
		require.ErrorIs(t, err, payment.ErrNotFound)
	})

	t.Run("an order without a payment is voided, and its payment can never be captured", func(t *testing.T) {
		t.Parallel()
		order := newOrder()
		oid, _ := payment.ParseID(order)
		v, err := b.svc.RefundPayment(ctx, payment.Ref{OrderID: oid}, "saga compensation", customer)
		require.NoError(t, err)
		require.Equal(t, payment.StatusVoided, v.Status)
		require.Equal(t, oid, v.OrderID)
		require.Equal(t, payment.Money{}, v.Amount)
		require.Equal(t, "saga compensation", v.RefundReason)
		require.EqualValues(t, 1, v.Version)
		require.Empty(t, events(t, b.pool, v), "no money moved, no event")

		again, err := b.svc.RefundPayment(ctx, payment.Ref{OrderID: oid}, "again", customer)
		require.NoError(t, err)
		require.Equal(t, v, again)
		got, err := b.svc.GetPayment(ctx, operator, payment.Ref{PaymentID: v.ID})
		require.NoError(t, err)
		require.Equal(t, v, got)

		for _, c := range []payment.Charge{charge(t, order, "USD", 999, "tok_visa"), charge(t, order, "EUR", 5, payment.TestCardDecline)} {
			p, err := b.svc.ProcessPayment(ctx, c)
			require.NoError(t, err, "the late ProcessPayment is answered, not refused")
			require.Equal(t, v, p, "and captures nothing")
		}
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM payments WHERE order_id = $1`, order))
		require.Empty(t, events(t, b.pool, v))
	})
}

// TestRefundRacingProcess reproduces a saga that compensates a
// ProcessPayment whose outcome it never learned: the refund by order id
// runs while the ProcessPayment is in flight, its payment row inserted but
// not committed. To hold it there, another transaction locks the outbox
// table, which the ProcessPayment writes next; the test waits (on
// pg_stat_activity) until it, and then the refund, are blocked.
func TestRefundRacingProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("a ProcessPayment that commits is refunded", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := charge(t, newOrder(), "EUR", 1500, "tok_visa")
		process := b.startProcessBlockedOnOutbox(t, ctx, c)
		refund := b.startRefund(t, c.OrderID)
		process.unblock(t)

		processed := process.wait(t)
		require.NoError(t, processed.err)
		require.Equal(t, payment.StatusCaptured, processed.p.Status)
		refunded := refund.wait(t)
		require.NoError(t, refunded.err)
		require.Equal(t, payment.StatusRefunded, refunded.p.Status)
		require.Equal(t, processed.p.ID, refunded.p.ID, "the payment itself, not a tombstone")
		require.EqualValues(t, 1500, refunded.p.Refunded)
		require.Equal(t, []string{event.PaymentProcessed, event.PaymentRefunded}, events(t, b.pool, processed.p))

		later, err := b.svc.ProcessPayment(ctx, c)
		require.NoError(t, err)
		require.Equal(t, payment.StatusRefunded, later.Status, "a later ProcessPayment captures nothing more")
		require.Equal(t, 1, count(t, b.pool, `SELECT count(*) FROM payments`))
	})

	t.Run("a ProcessPayment that dies in flight leaves the order voided", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		c := charge(t, newOrder(), "EUR", 1500, "tok_visa")
		callCtx, cancel := context.WithCancel(ctx)
		process := b.startProcessBlockedOnOutbox(t, callCtx, c)
		refund := b.startRefund(t, c.OrderID)
		cancel() // the in-flight call dies: its transaction rolls back

		require.ErrorIs(t, process.wait(t).err, context.Canceled)
		refunded := refund.wait(t)
		require.NoError(t, refunded.err)
		require.Equal(t, payment.StatusVoided, refunded.p.Status)
		process.unblock(t)

		later, err := b.svc.ProcessPayment(ctx, c)
		require.NoError(t, err)
		require.Equal(t, refunded.p, later, "a retried ProcessPayment finds the VOIDED payment")
		require.Zero(t, count(t, b.pool, `SELECT count(*) FROM outbox`))
		require.Zero(t, count(t, b.pool, `SELECT count(*) FROM payments WHERE status <> 'VOIDED'`))
	})

	t.Run("many orders processed and refunded at once: nothing stays captured", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		const orders = 40
		var wg sync.WaitGroup
		errs := make(chan error, 2*orders)
		for range orders {
			c := charge(t, newOrder(), "USD", 700, "tok_visa")
			wg.Go(func() {
				_, err := b.svc.ProcessPayment(ctx, c)
				errs <- err
			})
			wg.Go(func() {
				p, err := b.svc.RefundPayment(ctx, payment.Ref{OrderID: c.OrderID}, "race", customer)
				if err == nil && p.Status != payment.StatusRefunded && p.Status != payment.StatusVoided {
					err = fmt.Errorf("refund of order %s: status %s", c.OrderID, p.Status)
				}
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, orders, count(t, b.pool, `SELECT count(*) FROM payments`))
		require.Zero(t, count(t, b.pool, `SELECT count(*) FROM payments WHERE status = 'CAPTURED'`))
		require.Equal(t, 0, count(t, b.pool, `SELECT coalesce(sum(amount_minor - refunded_minor), 0) FROM payments`), "captured minus refunded")
		require.Equal(t, count(t, b.pool, `SELECT count(*) FROM payments WHERE status = 'REFUNDED'`),
			count(t, b.pool, `SELECT count(*) FROM outbox WHERE event_type = $1`, event.PaymentRefunded))
	})
}

type paymentResult struct {
	p   payment.Payment
	err error
}

// blockedProcess is a ProcessPayment held inside its transaction by a lock
// on the outbox table.
type blockedProcess struct {
	locker pgx.Tx
	done   chan paymentResult
}

// startProcessBlockedOnOutbox locks the outbox table, starts
// ProcessPayment(c) under ctx and returns once it has inserted its payment
// and waits for the lock.
func (b testBundle) startProcessBlockedOnOutbox(t *testing.T, ctx context.Context, c payment.Charge) *blockedProcess {
	t.Helper()
	locker, err := b.pool.Begin(context.Background())
	require.NoError(t, err)
	t.Cleanup(func() { _ = locker.Rollback(context.Background()) })
	_, err = locker.Exec(context.Background(), `LOCK TABLE outbox IN EXCLUSIVE MODE`)
	require.NoError(t, err)

	bp := &blockedProcess{locker: locker, done: make(chan paymentResult, 1)}
	go func() {
		p, err := b.svc.ProcessPayment(ctx, c)
		bp.done <- paymentResult{p, err}
	}()
	pgtest.WaitBlocked(t, b.pool, "InsertEvents")
	return bp
}

// unblock ends the lock holder, letting the ProcessPayment go on.
func (bp *blockedProcess) unblock(t *testing.T) {
	t.Helper()
	require.NoError(t, bp.locker.Rollback(context.Background()))
}

func (bp *blockedProcess) wait(t *testing.T) paymentResult { return waitResult(t, bp.done) }

type pendingRefund chan paymentResult

// startRefund starts RefundPayment by orderID and returns once it waits for
// the in-flight ProcessPayment's uncommitted payment (on the unique index).
func (b testBundle) startRefund(t *testing.T, orderID payment.ID) pendingRefund {
	t.Helper()
	done := make(pendingRefund, 1)
	go func() {
		p, err := b.svc.RefundPayment(context.Background(), payment.Ref{OrderID: orderID}, "saga compensation", customer)
		done <- paymentResult{p, err}
	}()
	pgtest.WaitBlocked(t, b.pool, "CreateVoidedPayment")
	return done
}

func (r pendingRefund) wait(t *testing.T) paymentResult { return waitResult(t, r) }

func waitResult(t *testing.T, c chan paymentResult) paymentResult {
	t.Helper()
	select {
	case r := <-c:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("the call did not finish")
		return paymentResult{}
	}
}

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), query, args...).Scan(&n))
	return n
}

func TestRefundRecordsOptimisticLockMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "JPY", 300, "tok_visa"))
	require.NoError(t, err)
	_, err = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "", customer)
	require.NoError(t, err)
	_, err = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "", customer)
	require.NoError(t, err)
	n, err := testutil.GatherAndCount(b.reg, "optimistic_lock_attempts_total")
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.NoError(t, testutil.GatherAndCompare(b.reg, stringsReader(`
# HELP optimistic_lock_attempts_total Conditional (version-checked) updates attempted.
# TYPE optimistic_lock_attempts_total counter
optimistic_lock_attempts_total{aggregate="payment"} 1
`), "optimistic_lock_attempts_total"), "a no-op refund is not an optimistic-lock attempt")
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

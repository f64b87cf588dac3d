package app_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
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
		app.WithRetryPolicy(optlock.Policy{MaxAttempts: 10, BaseDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}))
	return testBundle{pool: pool, svc: svc, reg: reg}
}

func charge(t *testing.T, orderID string, currency string, minor int64, method string) payment.Charge {
	t.Helper()
	c, err := payment.NewCharge(orderID, &payment.Money{Currency: currency, Minor: minor}, method)
	require.NoError(t, err)
	return c
}

func newOrder() string { return uuid.Must(uuid.NewV7()).String() }

func events(t *testing.T, pool *pgxpool.Pool, p payment.Payment) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT event_type FROM outbox WHERE aggregate_id = $1 ORDER BY id`, p.ID.String())
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
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
		got, err := b.svc.GetPayment(ctx, payment.Ref{OrderID: c.OrderID})
		require.NoError(t, err)
		require.Equal(t, p, got)
		require.Equal(t, []string{event.PaymentDeclined}, events(t, b.pool, p))
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
		r, err := b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "out of stock")
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
		first, err := b.svc.RefundPayment(ctx, payment.Ref{OrderID: p.OrderID}, "first")
		require.NoError(t, err)
		second, err := b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "second")
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
				results[i], errs[i] = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "")
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

	t.Run("a declined payment cannot be refunded", func(t *testing.T) {
		t.Parallel()
		p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "CHF", 4200, payment.TestCardDecline))
		require.NoError(t, err)
		_, err = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "")
		require.ErrorIs(t, err, payment.ErrNotRefundable)
		require.Equal(t, []string{event.PaymentDeclined}, events(t, b.pool, p))
	})

	t.Run("an unknown payment or order is not found", func(t *testing.T) {
		t.Parallel()
		id, _ := payment.ParseID(newOrder())
		_, err := b.svc.RefundPayment(ctx, payment.Ref{PaymentID: id}, "")
		require.ErrorIs(t, err, payment.ErrNotFound)
		_, err = b.svc.RefundPayment(ctx, payment.Ref{OrderID: id}, "")
		require.ErrorIs(t, err, payment.ErrNotFound)
		_, err = b.svc.GetPayment(ctx, payment.Ref{OrderID: id})
		require.ErrorIs(t, err, payment.ErrNotFound)
	})
}

func TestRefundRecordsOptimisticLockMetrics(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	p, err := b.svc.ProcessPayment(ctx, charge(t, newOrder(), "JPY", 300, "tok_visa"))
	require.NoError(t, err)
	_, err = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "")
	require.NoError(t, err)
	_, err = b.svc.RefundPayment(ctx, payment.Ref{PaymentID: p.ID}, "")
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

// Package app holds the payment use cases: process a payment, refund it,
// read it. It sits between the transport (grpcapi) and storage (postgres):
// requests arrive already validated as domain values, and storage is reached
// through the small Repository interface declared here.
package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// Repository stores payments. Every write stores the payment row and its
// domain event (outbox) in one local transaction: both or neither.
// Implementations are safe for concurrent use and honour ctx cancellation.
type Repository interface {
	// CreatePayment stores the new payment p (version 1) and its event
	// (payment.processed.v1 or payment.declined.v1) and returns it with
	// created true. If p's order already has a payment, nothing is written
	// and the existing payment is returned with created false; this holds
	// under any concurrency (a unique constraint on the order id decides).
	CreatePayment(ctx context.Context, p payment.Payment) (stored payment.Payment, created bool, err error)
	// VoidPayment stores the VOIDED tombstone p (version 1, no event) as its
	// order's one payment and returns it with created true. If the order
	// already has a payment, nothing is written and that payment is returned
	// with created false; a concurrent, uncommitted CreatePayment of the
	// order is waited for, so its payment is returned if it commits.
	VoidPayment(ctx context.Context, p payment.Payment) (stored payment.Payment, created bool, err error)
	// FindPayment reads the payment named by ref, or returns an error
	// wrapping payment.ErrNotFound.
	FindPayment(ctx context.Context, ref payment.Ref) (payment.Payment, error)
	// SaveRefund stores the refunded payment p and its payment.refunded.v1
	// event if the stored row is still at version expected and CAPTURED;
	// otherwise it writes nothing and returns an error wrapping
	// optlock.ErrConflict. It returns the payment as stored.
	SaveRefund(ctx context.Context, p payment.Payment, expected int64) (payment.Payment, error)
}

// Service runs the payment use cases. It is safe for concurrent use.
type Service struct {
	repo    Repository
	rules   payment.DeclineRules
	metrics *optlock.Metrics
	retry   optlock.Policy
	now     func() time.Time
	newID   func() (payment.ID, error)
	logger  *slog.Logger
}

// Option changes a Service default.
type Option func(*Service)

// WithRetryPolicy replaces optlock.DefaultPolicy for internal conflict
// retries.
func WithRetryPolicy(p optlock.Policy) Option { return func(s *Service) { s.retry = p } }

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(s *Service) { s.logger = l } }

// New returns a Service over repo deciding declines by rules. metrics
// records the optimistic-lock attempts of refunds; it may be nil.
func New(repo Repository, rules payment.DeclineRules, metrics *optlock.Metrics, opts ...Option) *Service {
	s := &Service{
		repo:    repo,
		rules:   rules,
		metrics: metrics,
		retry:   optlock.DefaultPolicy,
		now:     time.Now,
		newID:   newV7,
		logger:  slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// clock returns the current time as PostgreSQL stores it (UTC,
// microseconds), so a payment returned after a write equals the one read
// back later.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// aggregate labels the optimistic-lock metrics and version tokens.
const aggregate = event.AggregatePayment

// newV7 returns a time-ordered UUID: payments are inserted in id order,
// which keeps the primary-key index append-mostly.
func newV7() (payment.ID, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return payment.ID{}, fmt.Errorf("new payment id: %w", err)
	}
	return payment.ID(id), nil
}

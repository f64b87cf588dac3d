// Package reconciler finds orders that the order saga never picked up and
// starts their saga, or cancels them when no saga can run them.
//
// The saga of an order normally starts from its order.created.v1 event
// (internal/consumer). Should that fail for good — the event was parked,
// lost to a bug, or consumed by a release that did not start sagas — the
// order would stay PENDING for ever, its customer waiting and nothing
// noticing (issue 10). The reconciler closes that gap from the
// orchestrator's side, the one that knows whether a saga exists: every
// Interval it asks the order service for the orders still PENDING that were
// placed more than OlderThan ago (ListStalePendingOrders, the orchestrator
// only) and, for each that has no saga, starts the checkout saga from the
// order's own data — or, when that data cannot run a saga (it fails
// checkout.Order.Validate), cancels the order with a reason.
//
// Several replicas may reconcile at once: a saga is unique per type and
// order id (Engine.Start returns the existing one), and a cancellation is
// an idempotent transition under a fixed idempotency key, so the worst a
// race costs is a redundant call. Each replica's interval is jittered so
// that they do not all ask at the same moment.
package reconciler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

// Orders is the order service as the reconciler uses it
// (peers.Orders).
type Orders interface {
	// StalePending returns one page of the orders still PENDING that were
	// placed more than olderThan ago, oldest first, and the token of the
	// next page ("" after the last; "" to start).
	StalePending(ctx context.Context, olderThan time.Duration, pageToken string) ([]checkout.Order, string, error)
	// Cancel cancels the order with reason, acting for the user ctx carries
	// (caller.Delegation); see checkout.Orders.
	Cancel(ctx context.Context, key, orderID, reason string) error
}

// Sagas is the saga engine as the reconciler uses it (*saga.Engine).
type Sagas interface {
	// List lists sagas; the reconciler asks for those of one order id.
	List(ctx context.Context, f saga.ListFilter) ([]saga.Saga, error)
	// Start creates and runs a saga unless one exists for its type and
	// correlation id; it may wait for a free worker.
	Start(ctx context.Context, req saga.StartRequest) (saga.StartResult, error)
}

var _ Sagas = (*saga.Engine)(nil)

// Config tunes a Reconciler.
type Config struct {
	// Interval is the time between passes (jittered by ±20%); 0 disables
	// the reconciler.
	Interval time.Duration
	// OlderThan is the age from which a PENDING order without a saga is
	// reconciled: long enough for its event to have started the saga (the
	// orchestrator's default is the saga deadline plus 30s).
	OlderThan time.Duration
}

// Outcomes, the outcome label of reconciler_orders_total.
const (
	// OutcomeStarted: the order had no saga; one was started.
	OutcomeStarted = "started"
	// OutcomeHasSaga: the order has a saga (running, parked, or just
	// started by another replica or the consumer); left alone.
	OutcomeHasSaga = "has_saga"
	// OutcomeCancelled: no saga could run the order; it was cancelled.
	OutcomeCancelled = "cancelled"
	// OutcomeFailed: the order could not be reconciled this pass (an
	// error); the next pass tries again.
	OutcomeFailed = "failed"
)

// CancelReason is the reason given to an order cancelled because no saga
// could run it; the customer reads it.
const CancelReason = "the order could not be processed"

// Reconciler starts the missing sagas of stale PENDING orders. Create it
// with New and call Run once.
type Reconciler struct {
	orders   Orders
	sagas    Sagas
	cfg      Config
	log      *slog.Logger
	outcomes *prometheus.CounterVec
	passes   *prometheus.CounterVec
}

// New returns a Reconciler. reg receives reconciler_orders_total{outcome}
// and reconciler_passes_total{result} (nil: not registered).
func New(orders Orders, sagas Sagas, cfg Config, reg prometheus.Registerer, logger *slog.Logger) (*Reconciler, error) {
	if orders == nil || sagas == nil {
		return nil, errors.New("reconciler: New needs the order service and the saga engine")
	}
	if cfg.Interval < 0 || cfg.OlderThan < time.Second {
		return nil, fmt.Errorf("reconciler: bad config (interval %s, older than %s)", cfg.Interval, cfg.OlderThan)
	}
	logger = logs.OrDiscard(logger)
	r := &Reconciler{
		orders: orders, sagas: sagas, cfg: cfg, log: logger.With("component", "reconciler"),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_orders_total",
			Help: "Stale PENDING orders the reconciler looked at, by outcome (started: a missing saga was started; has_saga; cancelled: no saga could run it; failed: retried next pass).",
		}, []string{"outcome"}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "reconciler_passes_total",
			Help: "Reconciliation passes, by result (ok, error: the pass stopped early).",
		}, []string{"result"}),
	}
	for _, o := range []string{OutcomeStarted, OutcomeHasSaga, OutcomeCancelled, OutcomeFailed} {
		r.outcomes.WithLabelValues(o)
	}
	for _, res := range []string{"ok", "error"} {
		r.passes.WithLabelValues(res)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{r.outcomes, r.passes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("reconciler: register metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Stats counts a pass's orders by outcome.
type Stats map[string]int

// Run reconciles every Interval (jittered) until ctx is cancelled, then
// returns nil. A failed pass is logged and counted; the next one tries
// again. With Interval 0 it only waits for ctx.
func (r *Reconciler) Run(ctx context.Context) error {
	if r.cfg.Interval == 0 {
		r.log.InfoContext(ctx, "reconciler disabled")
		<-ctx.Done()
		return nil
	}
	r.log.InfoContext(ctx, "reconciler started", "interval", r.cfg.Interval.String(), "older_than", r.cfg.OlderThan.String())
	for {
		t := time.NewTimer(jittered(r.cfg.Interval))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
			r.log.WarnContext(ctx, "reconciliation pass failed; trying again next interval", "error", err.Error())
		}
	}
}

// jittered is d ± 20%.
func jittered(d time.Duration) time.Duration {
	spread := int64(d) * 2 / 5
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread/2) + time.Duration(rand.Int64N(spread+1)) //nolint:gosec // G404: jitter needs spread, not secrecy
}

// Pass reconciles every stale PENDING order once and returns what it did.
// It stops at the first error listing the orders (returned); an order that
// fails is counted (OutcomeFailed), logged and left for the next pass.
func (r *Reconciler) Pass(ctx context.Context) (Stats, error) {
	stats := Stats{}
	token := ""
	for {
		orders, next, err := r.orders.StalePending(ctx, r.cfg.OlderThan, token)
		if err != nil {
			r.passes.WithLabelValues("error").Inc()
			return stats, fmt.Errorf("reconciler: list stale pending orders: %w", err)
		}
		for _, o := range orders {
			outcome := r.reconcile(ctx, o)
			stats[outcome]++
			r.outcomes.WithLabelValues(outcome).Inc()
		}
		if next == "" {
			break
		}
		token = next
	}
	r.passes.WithLabelValues("ok").Inc()
	if stats[OutcomeStarted]+stats[OutcomeCancelled]+stats[OutcomeFailed] > 0 {
		r.log.InfoContext(ctx, "reconciliation pass", "started", stats[OutcomeStarted], "cancelled", stats[OutcomeCancelled],
			"failed", stats[OutcomeFailed], "has_saga", stats[OutcomeHasSaga])
	}
	return stats, nil
}

// reconcile starts the saga of o if it has none, or cancels o if no saga
// can run it.
func (r *Reconciler) reconcile(ctx context.Context, o checkout.Order) string {
	log := r.log.With("order_id", o.OrderID)
	existing, err := r.sagas.List(ctx, saga.ListFilter{CorrelationID: o.OrderID, Limit: 1})
	if err != nil {
		log.WarnContext(ctx, "reconciler: looking for the order's saga failed", "error", err.Error())
		return OutcomeFailed
	}
	if len(existing) > 0 {
		return OutcomeHasSaga
	}
	if err := o.Validate(); err != nil {
		return r.cancel(ctx, log, o, err)
	}
	data, err := o.Marshal()
	if err != nil {
		return r.cancel(ctx, log, o, err)
	}
	res, err := r.sagas.Start(ctx, saga.StartRequest{
		Type: checkout.SagaType, CorrelationID: o.OrderID, StartedBy: o.PlacedBy, Data: data,
	})
	if err != nil {
		log.WarnContext(ctx, "reconciler: starting the order's saga failed", "error", err.Error())
		return OutcomeFailed
	}
	if !res.Created {
		return OutcomeHasSaga // another replica, or the event, was first
	}
	log.WarnContext(ctx, "stale PENDING order had no saga; saga started", "saga_id", res.SagaID.String(),
		"older_than", r.cfg.OlderThan.String())
	return OutcomeStarted
}

// cancel cancels o, which no saga can run (why), acting for its placer as
// the saga would.
func (r *Reconciler) cancel(ctx context.Context, log *slog.Logger, o checkout.Order, why error) string {
	ctx = caller.WithDelegation(ctx, caller.Delegation{User: o.PlacedBy, Permissions: checkout.Permissions})
	if err := r.orders.Cancel(ctx, "reconcile:"+o.OrderID+":cancel", o.OrderID, CancelReason); err != nil {
		log.ErrorContext(ctx, "reconciler: no saga can run the order, and cancelling it failed", "why", why.Error(), "error", err.Error())
		return OutcomeFailed
	}
	log.WarnContext(ctx, "stale PENDING order cannot be run by a saga; order cancelled", "why", why.Error(), "reason", CancelReason)
	return OutcomeCancelled
}

package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/platform/failpoint"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// ProcessPayment captures charge for its order, or declines it under the
// decline rules; a decline is stored too (the order has its one payment) and
// returned without error with status DECLINED.
//
// An order has at most one payment. When it already has one, nothing is
// written: if the stored payment has the same amount and currency it is
// returned as is (a retry, even one whose idempotency key was lost, is
// harmless); otherwise the error wraps payment.ErrAmountMismatch. If the
// order's payment is VOIDED (it was refunded before it was processed: the
// saga compensated this very call), the VOIDED payment is returned as is,
// whatever the amount: nothing is captured and no event is written.
func (s *Service) ProcessPayment(ctx context.Context, charge payment.Charge) (payment.Payment, error) {
	id, err := s.newID()
	if err != nil {
		return payment.Payment{}, err
	}
	p := payment.NewPayment(id, charge, s.rules, s.clock())
	// The idempotency interceptor has claimed the request's key.
	failpoint.Hit("payment.process.mid-request")
	stored, created, err := s.repo.CreatePayment(ctx, p)
	if err != nil {
		return payment.Payment{}, fmt.Errorf("process payment for order %s: %w", charge.OrderID, err)
	}
	failpoint.Hit("payment.process.after-commit")
	if !created && !stored.Matches(charge) {
		return payment.Payment{}, fmt.Errorf("process payment for order %s (has %s %d, asked %s %d): %w",
			charge.OrderID, stored.Amount.Currency, stored.Amount.Minor,
			charge.Amount.Currency, charge.Amount.Minor, payment.ErrAmountMismatch)
	}
	if !created && stored.Status == payment.StatusVoided {
		s.logger.InfoContext(ctx, "payment not processed: the order was refunded before it was paid",
			"payment_id", stored.ID.String(), "order_id", stored.OrderID.String())
	}
	if created {
		s.logger.InfoContext(ctx, "payment processed", "payment_id", stored.ID.String(),
			"order_id", stored.OrderID.String(), "status", string(stored.Status), "decline_reason", stored.DeclineReason)
	}
	return stored, nil
}

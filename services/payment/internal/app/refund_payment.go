package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// RefundPayment refunds the payment named by ref in full, at most once:
// a CAPTURED payment becomes REFUNDED (one payment.refunded.v1 event); a
// REFUNDED payment is returned unchanged without error or event; a DECLINED
// one returns an error wrapping payment.ErrNotRefundable; an unknown one
// payment.ErrNotFound.
//
// The update is conditional on the version read. A concurrent change (two
// refunds racing) is retried under the Service's optlock policy: the loser
// re-reads, finds the payment REFUNDED and returns it, so concurrent refunds
// of one payment all succeed and exactly one writes.
func (s *Service) RefundPayment(ctx context.Context, ref payment.Ref, reason string) (payment.Payment, error) {
	p, err := s.repo.FindPayment(ctx, ref)
	if err != nil {
		return payment.Payment{}, fmt.Errorf("refund %s: %w", ref, err)
	}
	// Only a CAPTURED payment needs a conditional write; deciding the other
	// cases before the retry loop keeps no-op refunds out of the
	// optimistic-lock attempt counts.
	if p.Status != payment.StatusCaptured {
		if _, err := p.Refund(reason, s.clock()); err != nil {
			return payment.Payment{}, fmt.Errorf("refund %s: %w", ref, err)
		}
		return p, nil
	}

	var out payment.Payment
	first, wrote := true, false
	err = optlock.Retry(ctx, s.retry, s.metrics, aggregate, func(ctx context.Context) error {
		if !first {
			// A conflict: somebody changed the payment since we read it.
			var err error
			if p, err = s.repo.FindPayment(ctx, payment.Ref{PaymentID: p.ID}); err != nil {
				return err
			}
		}
		first = false
		expected := p.Version
		changed, err := p.Refund(reason, s.clock())
		if err != nil || !changed {
			out = p
			return err
		}
		out, err = s.repo.SaveRefund(ctx, p, expected)
		wrote = err == nil
		return err
	})
	if err != nil {
		return payment.Payment{}, fmt.Errorf("refund %s: %w", ref, err)
	}
	if wrote {
		s.logger.InfoContext(ctx, "payment refunded", "payment_id", out.ID.String(), "order_id", out.OrderID.String())
	}
	return out, nil
}

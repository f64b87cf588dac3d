package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// RefundPayment refunds the payment named by ref in full, at most once:
// a CAPTURED payment becomes REFUNDED (one payment.refunded.v1 event); a
// REFUNDED, DECLINED or VOIDED payment is returned unchanged without error
// or event (nothing is left to refund, and a compensation must be able to
// succeed). An unknown payment id is an error wrapping payment.ErrNotFound:
// a payment id comes from a response, so it cannot name a payment still in
// flight.
//
// An order id without a payment gets a VOIDED one (no event: no money
// moved), returned as the result: the order's ProcessPayment, still in
// flight or sent later, then finds it and captures nothing, so the refund
// is absorbing. If a ProcessPayment of the order is in flight, the VOIDED
// insert waits for it: when it commits, its payment is refunded as above.
//
// The update is conditional on the version read. A concurrent change (two
// refunds racing) is retried under the Service's optlock policy: the loser
// re-reads, finds the payment REFUNDED and returns it, so concurrent refunds
// of one payment all succeed and exactly one writes. customerID is the user
// the refund is made for, recorded on a VOIDED payment.
func (s *Service) RefundPayment(ctx context.Context, ref payment.Ref, reason, customerID string) (payment.Payment, error) {
	p, err := s.repo.FindPayment(ctx, ref)
	if errors.Is(err, payment.ErrNotFound) && ref.ByOrder() {
		var voided bool
		if p, voided, err = s.void(ctx, ref.OrderID, customerID, reason); err != nil || voided {
			return p, err
		}
		// A ProcessPayment committed the order's payment meanwhile: refund it.
	} else if err != nil {
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

// void records orderID's payment as VOIDED. voided is false when the order
// has a payment after all (committed by a concurrent ProcessPayment), which
// is returned.
func (s *Service) void(ctx context.Context, orderID payment.ID, customerID, reason string) (p payment.Payment, voided bool, err error) {
	id, err := s.newID()
	if err != nil {
		return payment.Payment{}, false, err
	}
	p, voided, err = s.repo.VoidPayment(ctx, payment.Void(id, orderID, customerID, reason, s.clock()))
	if err != nil {
		return payment.Payment{}, false, fmt.Errorf("refund order %s: void: %w", orderID, err)
	}
	if voided {
		s.logger.InfoContext(ctx, "order refunded before it was paid: payment voided",
			"payment_id", p.ID.String(), "order_id", p.OrderID.String())
	}
	return p, voided, nil
}

package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// GetPayment reads the payment named by ref for who: an operator or a
// service sees every payment, a user only their own. An unknown payment,
// and someone else's, return an error wrapping payment.ErrNotFound (the
// same error: a payment's existence is not revealed).
func (s *Service) GetPayment(ctx context.Context, who caller.Identity, ref payment.Ref) (payment.Payment, error) {
	p, err := s.repo.FindPayment(ctx, ref)
	if err != nil {
		return payment.Payment{}, fmt.Errorf("get %s: %w", ref, err)
	}
	if user := who.EndUser(); user != "" && !who.IsOperator() && (p.CustomerID == "" || p.CustomerID != user) {
		return payment.Payment{}, fmt.Errorf("get %s for %s: %w", ref, who, payment.ErrNotFound)
	}
	return p, nil
}

package app

import (
	"context"
	"fmt"

	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// GetPayment reads the payment named by ref; an unknown one returns an error
// wrapping payment.ErrNotFound.
func (s *Service) GetPayment(ctx context.Context, ref payment.Ref) (payment.Payment, error) {
	p, err := s.repo.FindPayment(ctx, ref)
	if err != nil {
		return payment.Payment{}, fmt.Errorf("get %s: %w", ref, err)
	}
	return p, nil
}

package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/goodgo/goodgo/platform/failpoint"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// ReserveStock reserves every item for orderID or none of them. Running
// short is not an error: the reservation comes back REJECTED
// ("insufficient_stock"). A repeated call for the same order returns the
// order's reservation unchanged if it asked for the same items, and fails
// with inventory.ErrReservationMismatch if it asked for different ones.
// An order that was released before it was reserved (ReleaseStock overtook
// this call) has a tombstone: it is returned as it is, RELEASED without
// items, whatever items were asked for, and no stock is taken.
// Malformed input fails with a FieldError and an unknown SKU with a
// NotFoundError naming items[i].sku; nothing is written in either case.
func (s *Service) ReserveStock(ctx context.Context, orderID string, items []inventory.Item) (inventory.Reservation, error) {
	req, err := inventory.NewReserveRequest(orderID, items)
	if err != nil {
		return inventory.Reservation{}, err
	}
	// The idempotency interceptor has claimed the request's key.
	failpoint.Hit("inventory.reserve.mid-request")
	res, created, err := s.repo.Reserve(ctx, req)
	if err != nil {
		var nf *inventory.NotFoundError
		if errors.As(err, &nf) {
			// Storage names the SKU; the client needs the field it sent.
			return inventory.Reservation{}, inventory.NotFound(fmt.Sprintf("items[%d].sku", inventory.ItemIndex(items, nf.Value)), nf.Value)
		}
		return inventory.Reservation{}, fmt.Errorf("reserve stock: %w", err)
	}
	failpoint.Hit("inventory.reserve.after-commit")
	if !created && !res.Tombstone() && !res.SameItems(req.Items) {
		return inventory.Reservation{}, fmt.Errorf("order %s: %w", req.OrderID, inventory.ErrReservationMismatch)
	}
	if !created && res.Tombstone() {
		s.logger.InfoContext(ctx, "stock reservation refused: the order was released before it was reserved",
			"order_id", res.OrderID, "reservation_id", res.ID)
	}
	if created {
		s.logger.InfoContext(ctx, "stock reservation created",
			"order_id", res.OrderID, "reservation_id", res.ID, "status", string(res.Status), "items", len(res.Items))
	}
	return res, nil
}

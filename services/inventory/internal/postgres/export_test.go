package postgres

import (
	"context"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// ReserveOutcome is what Reserve returns for one request.
type ReserveOutcome struct {
	Res     inventory.Reservation
	Created bool
	Err     error
}

// ReserveGroup runs reqs (single-item, one SKU) as one group of the hot
// path, as the group commit would, and returns each outcome in reqs' order.
func (r *Repository) ReserveGroup(ctx context.Context, reqs []inventory.ReserveRequest) ([]ReserveOutcome, error) {
	calls := make([]*reserveCall, len(reqs))
	for i, req := range reqs {
		c := &reserveCall{req: req}
		var err error
		if c.orderID, err = uuid.Parse(req.OrderID); err != nil {
			return nil, err
		}
		if c.id, err = newID(); err != nil {
			return nil, err
		}
		calls[i] = c
	}
	r.reserveBatch(ctx, append([]*reserveCall(nil), calls...)) // it sorts what it is given
	out := make([]ReserveOutcome, len(calls))
	for i, c := range calls {
		out[i] = ReserveOutcome{c.res, c.created, c.err}
	}
	return out, nil
}

package postgres

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/services/order/internal/postgres/orderdb"
)

// resealPage is how many orders Reseal reads per query.
const resealPage = 500

// Reseal seals every shipping address that is in the clear or under
// another key than the active one under the active key, while the service
// runs: each row is replaced only if its address is still the one read, so
// a concurrent change (already sealed under the active key) wins. It walks
// the table once in id order; a run cut short can simply be run again.
func (r *Repository) Reseal(ctx context.Context) (keyring.ResealStats, error) {
	active := r.pii.ActiveKeyID()
	return keyring.Reseal(ctx, keyring.Pages[uuid.UUID, orderdb.ListAddressesRow]{
		Page: func(ctx context.Context, after uuid.UUID) ([]orderdb.ListAddressesRow, error) {
			rows, err := r.q.ListAddresses(ctx, orderdb.ListAddressesParams{After: after, PageSize: resealPage})
			if err != nil {
				return nil, fmt.Errorf("reseal addresses: list after %s: %w", after, err)
			}
			return rows, nil
		},
		Size:    resealPage,
		Key:     func(row orderdb.ListAddressesRow) uuid.UUID { return row.ID },
		Current: func(row orderdb.ListAddressesRow) bool { return row.ShippingAddressKeyID == active },
		Reseal:  r.resealOne,
	})
}

func (r *Repository) resealOne(ctx context.Context, row orderdb.ListAddressesRow) (bool, error) {
	plain, err := r.openRaw(row.ID, row.ShippingAddressKeyID, row.ShippingAddress)
	if err != nil {
		return false, fmt.Errorf("reseal: %w", err)
	}
	kid, sealed, err := r.sealRaw(row.ID, plain)
	if err != nil {
		return false, fmt.Errorf("reseal order %s: %w", row.ID, err)
	}
	n, err := r.q.ResealAddress(ctx, orderdb.ResealAddressParams{
		ID: row.ID, Sealed: sealed, KeyID: kid,
		ReadKeyID: row.ShippingAddressKeyID, ReadSealed: row.ShippingAddress,
	})
	if err != nil {
		return false, fmt.Errorf("reseal order %s: %w", row.ID, err)
	}
	return n == 1, nil
}

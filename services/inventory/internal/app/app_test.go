package app_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/services/inventory/internal/app"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
	"github.com/goodgo/goodgo/services/inventory/internal/postgres"
)

// admin is a user with the admin role, who may adjust stock.
var admin = caller.Identity{User: "root", Roles: []string{caller.RoleAdmin}}

type testBundle struct {
	svc    *app.Service
	signer *optlock.Signer
	reg    *prometheus.Registry
}

// setup wires the use cases to the real repository on a fresh database
// holding the seeded catalog.
func setup(t *testing.T) testBundle {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.Inventory)
	reg := prometheus.NewRegistry()
	w, err := outbox.NewWriter(nil, reg)
	require.NoError(t, err)
	signer, err := optlock.NewSigner("k", map[string][]byte{"k": bytes.Repeat([]byte{1}, 32)})
	require.NoError(t, err)
	locks, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	return testBundle{svc: app.New(postgres.NewRepository(pool, w), signer, locks, nil, nil), signer: signer, reg: reg}
}

func (b testBundle) lockCounts(t *testing.T) (attempts, conflicts int) {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "optimistic_lock_attempts_total":
				attempts += int(m.GetCounter().GetValue())
			case "optimistic_lock_conflicts_total":
				conflicts += int(m.GetCounter().GetValue())
			}
		}
	}
	return attempts, conflicts
}

// mouse returns the seeded SKU-MOUSE and a version token for it as read.
func (b testBundle) mouse(t *testing.T) (inventory.Product, string) {
	t.Helper()
	p, err := b.svc.GetStock(context.Background(), "SKU-MOUSE")
	require.NoError(t, err)
	return p, b.signer.Token("product", p.SKU, p.Version)
}

func TestAdjustStockRecordsOptimisticLockOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	p, token := b.mouse(t)

	_, err := b.svc.AdjustStock(ctx, admin, "SKU-MOUSE", 10, token, "")
	require.NoError(t, err)
	attempts, conflicts := b.lockCounts(t)
	require.Equal(t, []int{1, 0}, []int{attempts, conflicts})

	_, err = b.svc.AdjustStock(ctx, admin, "SKU-MOUSE", 11, token, "")
	require.ErrorIs(t, err, optlock.ErrConflict)
	var ce *optlock.ConflictError
	require.ErrorAs(t, err, &ce, "the conflict names the versions, for the security log")
	require.Equal(t, [2]int64{p.Version, p.Version + 1}, [2]int64{ce.Presented, ce.Current})
	attempts, conflicts = b.lockCounts(t)
	require.Equal(t, []int{2, 1}, []int{attempts, conflicts}, "the stale token lost a conditional update")

	_, err = b.svc.AdjustStock(ctx, admin, "SKU-MOUSE", 11, "forged", "")
	require.ErrorIs(t, err, optlock.ErrMalformedToken)
	other, err := optlock.NewSigner("k", map[string][]byte{"k": bytes.Repeat([]byte{2}, 32)})
	require.NoError(t, err)
	_, err = b.svc.AdjustStock(ctx, admin, "SKU-MOUSE", 11, other.Token("product", "SKU-MOUSE", p.Version+1), "")
	require.ErrorIs(t, err, optlock.ErrInvalidToken, "signed with another key: forged")
	_, err = b.svc.AdjustStock(ctx, admin, "SKU-NOPE", 11, b.signer.Token("product", "SKU-NOPE", 1), "")
	require.ErrorIs(t, err, inventory.ErrNotFound)
	attempts, conflicts = b.lockCounts(t)
	require.Equal(t, []int{2, 1}, []int{attempts, conflicts}, "no update ran for a forged token or an unknown SKU")
	require.Equal(t, 1, testutil.CollectAndCount(b.reg, "optimistic_lock_success_rate"))
}

func TestAdjustStockIsForAdminsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, token := b.mouse(t)
	for _, who := range []caller.Identity{
		{}, {User: "admin"}, {Service: "orchestrator"}, {User: "bob", Roles: []string{caller.RoleOperator}},
		{Service: "orchestrator", User: "root", Delegated: true, Roles: []string{caller.RoleAdmin}},
	} {
		_, err := b.svc.AdjustStock(ctx, who, "SKU-MOUSE", 10, token, "")
		require.ErrorIs(t, err, inventory.ErrPermissionDenied, who.String())
	}
	attempts, _ := b.lockCounts(t)
	require.Zero(t, attempts, "nothing was tried")
	_, err := b.svc.AdjustStock(ctx, admin, "SKU-MOUSE", 10, token, "")
	require.NoError(t, err)
}

func TestReserveStockAfterReleaseReturnsTheTombstone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	orderID := uuid.NewString()
	tomb, err := b.svc.ReleaseStock(ctx, orderID)
	require.NoError(t, err)
	require.True(t, tomb.Tombstone())
	require.Equal(t, inventory.StatusReleased, tomb.Status)

	// Any items, even different ones each time: not a mismatch, nothing taken.
	for _, its := range [][]inventory.Item{{{SKU: "SKU-MOUSE", Quantity: 1}}, {{SKU: "SKU-CABLE", Quantity: 2}}} {
		res, err := b.svc.ReserveStock(ctx, orderID, its)
		require.NoError(t, err)
		require.Equal(t, tomb.ID, res.ID)
		require.Equal(t, inventory.StatusReleased, res.Status)
		require.Empty(t, res.Items)
	}
	p, err := b.svc.GetStock(ctx, "SKU-MOUSE")
	require.NoError(t, err)
	require.Zero(t, p.Reserved)
}

func TestReserveStockNamesTheRequestIndexOfAnUnknownSKU(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Sorted, SKU-AAA would come first; the client sent it third.
	_, err := b.svc.ReserveStock(context.Background(), uuid.NewString(), []inventory.Item{
		{SKU: "SKU-MOUSE", Quantity: 1}, {SKU: "SKU-CABLE", Quantity: 1}, {SKU: "SKU-AAA", Quantity: 1},
	})
	var nf *inventory.NotFoundError
	require.ErrorAs(t, err, &nf)
	require.Equal(t, "items[2].sku", nf.Field)
}

func TestReserveStockRefusesToChangeAnOrdersReservation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	orderID := uuid.NewString()
	first, err := b.svc.ReserveStock(ctx, orderID, []inventory.Item{{SKU: "SKU-MOUSE", Quantity: 1}, {SKU: "SKU-CABLE", Quantity: 2}})
	require.NoError(t, err)

	// Same items in another order: the same request.
	again, err := b.svc.ReserveStock(ctx, orderID, []inventory.Item{{SKU: "SKU-CABLE", Quantity: 2}, {SKU: "SKU-MOUSE", Quantity: 1}})
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID)

	_, err = b.svc.ReserveStock(ctx, orderID, []inventory.Item{{SKU: "SKU-MOUSE", Quantity: 1}})
	require.ErrorIs(t, err, inventory.ErrReservationMismatch)
}

package grpcapi

import (
	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/ratelimit"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// PermPlaceOrder is what the order saga acts with: the user placed an
// order, which lets the saga reserve and release stock for it.
const PermPlaceOrder = "orders.place"

// Policies say who may call each RPC (platform/authz). The catalog is for
// signed-in users and the services that price and reserve (order,
// orchestrator); reserving and releasing are saga steps, for the
// orchestrator acting for the order's user; setting stock is for admins;
// reading a reservation is for operators (the consistency auditor).
func Policies() authz.Policies {
	read := authz.Policy{Users: true, Services: []string{"order", "orchestrator"}, Limit: ratelimit.Read}
	saga := authz.Policy{Services: []string{"orchestrator"}, OnBehalfOf: PermPlaceOrder}
	return authz.Policies{
		inventoryv1.InventoryService_GetProducts_FullMethodName:    read,
		inventoryv1.InventoryService_GetStock_FullMethodName:       read,
		inventoryv1.InventoryService_ReserveStock_FullMethodName:   saga,
		inventoryv1.InventoryService_ReleaseStock_FullMethodName:   saga,
		inventoryv1.InventoryService_AdjustStock_FullMethodName:    {Roles: []string{caller.RoleAdmin}, Limit: ratelimit.Update},
		inventoryv1.InventoryService_GetReservation_FullMethodName: {Roles: []string{caller.RoleOperator}, Limit: ratelimit.Read},
	}
}

// IdempotencyPolicies is the idempotency policy of every mutating RPC of
// the service, for idempotency.New. Reads (GetProducts, GetStock) are not
// guarded. RedisDownSafe says whether the RPC may run unguarded while
// Redis is down:
//
//   - ReserveStock: true. reservations.order_id is UNIQUE and the
//     reservation row is inserted first, so a duplicate that Redis did not
//     catch finds the order's reservation and returns it: stock is never
//     taken twice.
//   - ReleaseStock: true. The release is the conditional transition
//     RESERVED → RELEASED on the order's one reservation; a duplicate
//     matches nothing and returns the released reservation.
//   - AdjustStock: false. It is a version-token update: a retry of a call
//     that already succeeded would present a now-stale token and come back
//     as a spurious Aborted conflict, telling the admin their change failed
//     when it did not. Better to answer Unavailable, so that the client
//     retries with the same key once Redis is back and gets the replay.
func IdempotencyPolicies() map[string]idempotency.Policy {
	return map[string]idempotency.Policy{
		inventoryv1.InventoryService_ReserveStock_FullMethodName: {RedisDownSafe: true},
		inventoryv1.InventoryService_ReleaseStock_FullMethodName: {RedisDownSafe: true},
		inventoryv1.InventoryService_AdjustStock_FullMethodName:  {RedisDownSafe: false},
	}
}

package grpcapi

import (
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/ratelimit"
)

// PermPlaceOrder is what the order saga acts with: the user placed an
// order, which lets the saga charge and refund them for it.
const PermPlaceOrder = "orders.place"

// Policies say who may call each RPC (platform/authz). Charging and
// refunding are saga steps: the orchestrator only, acting for the user
// whose order it is. Reading is for that user (App checks the payment is
// theirs), operators and the orchestrator.
func Policies() authz.Policies {
	saga := authz.Policy{Services: []string{"orchestrator"}, OnBehalfOf: PermPlaceOrder}
	return authz.Policies{
		paymentv1.PaymentService_ProcessPayment_FullMethodName: saga,
		paymentv1.PaymentService_RefundPayment_FullMethodName:  saga,
		paymentv1.PaymentService_GetPayment_FullMethodName:     {Users: true, Services: []string{"orchestrator"}, Limit: ratelimit.Read},
	}
}

// IdempotencyPolicies is the idempotency policy of every mutating RPC of
// PaymentService, keyed by full method name; GetPayment reads and needs no
// key. Both mutating RPCs are RedisDownSafe: when the idempotency store
// fails they run unguarded, because the database alone already makes a
// duplicate harmless:
//
//   - ProcessPayment: payments.order_id is UNIQUE and the insert is ON
//     CONFLICT DO NOTHING, so a duplicate cannot charge twice; it returns
//     the order's existing payment (same amount) or FailedPrecondition
//     (another amount) – the answer a replay would have given.
//   - RefundPayment: CAPTURED → REFUNDED happens at most once (a
//     version-checked UPDATE guarded by status = 'CAPTURED'), and refunding
//     a REFUNDED payment succeeds without change, so a duplicate returns the
//     same refunded payment and writes nothing. A refund by order id of an
//     order without a payment inserts the VOIDED payment under the same
//     unique order_id, so a duplicate finds and returns it.
func IdempotencyPolicies() map[string]idempotency.Policy {
	return map[string]idempotency.Policy{
		paymentv1.PaymentService_ProcessPayment_FullMethodName: {RedisDownSafe: true},
		paymentv1.PaymentService_RefundPayment_FullMethodName:  {RedisDownSafe: true},
	}
}

package peers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/saga"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

// failing answers every saga RPC with err.
type failing struct {
	paymentv1.PaymentServiceClient
	inventoryv1.InventoryServiceClient
	orderv1.OrderServiceClient
	err error
}

func (f failing) ProcessPayment(context.Context, *paymentv1.ProcessPaymentRequest, ...grpc.CallOption) (*paymentv1.ProcessPaymentResponse, error) {
	return nil, f.err
}

func (f failing) RefundPayment(context.Context, *paymentv1.RefundPaymentRequest, ...grpc.CallOption) (*paymentv1.RefundPaymentResponse, error) {
	return nil, f.err
}

func (f failing) ReserveStock(context.Context, *inventoryv1.ReserveStockRequest, ...grpc.CallOption) (*inventoryv1.ReserveStockResponse, error) {
	return nil, f.err
}

func (f failing) ReleaseStock(context.Context, *inventoryv1.ReleaseStockRequest, ...grpc.CallOption) (*inventoryv1.ReleaseStockResponse, error) {
	return nil, f.err
}

func (f failing) ConfirmOrder(context.Context, *orderv1.ConfirmOrderRequest, ...grpc.CallOption) (*orderv1.ConfirmOrderResponse, error) {
	return nil, f.err
}

func (f failing) CancelOrder(context.Context, *orderv1.CancelOrderRequest, ...grpc.CallOption) (*orderv1.CancelOrderResponse, error) {
	return nil, f.err
}

// callRPC makes the step call of rpc through its adapter, against a client
// that answers err.
func callRPC(rpc string, err error) error {
	ctx, c := context.Background(), failing{err: err}
	switch rpc {
	case rpcProcessPayment:
		_, err := Payments{Client: c}.Charge(ctx, "k", checkout.Order{})
		return err
	case rpcRefundPayment:
		return Payments{Client: c}.Refund(ctx, "k", "o", "r")
	case rpcReserveStock:
		_, err := Inventory{Client: c}.Reserve(ctx, "k", "o", nil)
		return err
	case rpcReleaseStock:
		return Inventory{Client: c}.Release(ctx, "k", "o")
	case rpcConfirmOrder:
		return Orders{Client: c}.Confirm(ctx, "k", "o")
	case rpcCancelOrder:
		return Orders{Client: c}.Cancel(ctx, "k", "o", "r")
	}
	panic("unknown rpc " + rpc)
}

// TestClassificationTable: every gRPC code of every RPC the saga calls is
// an unknown outcome — retried with the same key, compensated if the saga
// turns back — except the documented refusal that comes as an error:
// ConfirmOrder's FailedPrecondition for an order that is no longer
// PENDING. (The other business refusals are answers: see
// TestOnlyCaptureAndReservationSucceed.)
func TestClassificationTable(t *testing.T) {
	const (
		cancelled  = "order_id: order is CANCELLED and cannot be confirmed" // services/order
		confirmed  = "order_id: order is CONFIRMED and cannot be cancelled" // services/order
		reusedKey  = "idempotency-key was already used with a different request"
		otherPayed = "order_id: already has a payment of a different amount" // services/payment
	)
	rpcs := []string{rpcProcessPayment, rpcRefundPayment, rpcReserveStock, rpcReleaseStock, rpcConfirmOrder, rpcCancelOrder}
	type answer struct {
		code codes.Code
		msg  string
	}
	answers := []answer{{codes.FailedPrecondition, cancelled}, {codes.FailedPrecondition, confirmed},
		{codes.FailedPrecondition, reusedKey}, {codes.FailedPrecondition, otherPayed}}
	for c := codes.Canceled; c <= codes.Unauthenticated; c++ {
		answers = append(answers, answer{c, "m"}, answer{c, cancelled})
	}
	for _, rpc := range rpcs {
		for _, a := range answers {
			want := unknownOutcome
			if rpc == rpcConfirmOrder && a.code == codes.FailedPrecondition && a.msg == cancelled {
				want = refused
			}
			name := fmt.Sprintf("%s %s %q", rpc, a.code, a.msg)
			in := status.Error(a.code, a.msg)
			require.Equal(t, want, classOf(rpc, in), name)

			err := callRPC(rpc, in)
			require.Error(t, err, name)
			require.Equal(t, want == refused, saga.IsPermanent(err), "%s: %s is %s", name, err, want)
			require.Equal(t, a.code, status.Code(err), "%s: the status survives wrapping", name)
			require.ErrorContains(t, err, rpc+": ", "the error names the RPC")
		}
		err := callRPC(rpc, errors.New("connection reset"))
		require.False(t, saga.IsPermanent(err), "%s: an error that is not a status is an unknown outcome", rpc)
	}
	// Spot checks of the classes the issue was about.
	for _, c := range []codes.Code{codes.Internal, codes.Unknown, codes.DeadlineExceeded, codes.Unavailable,
		codes.ResourceExhausted, codes.Aborted, codes.Canceled} {
		require.False(t, saga.IsPermanent(callRPC(rpcProcessPayment, status.Error(c, "m"))), c.String())
		require.False(t, saga.IsPermanent(callRPC(rpcConfirmOrder, status.Error(c, "m"))), c.String())
	}
	require.NoError(t, classify(rpcConfirmOrder, nil))
}

func TestOutgoingMetadata(t *testing.T) {
	md, ok := metadata.FromOutgoingContext(outgoing(context.Background(), "saga:1:payment"))
	require.True(t, ok)
	require.Equal(t, []string{"saga:1:payment"}, md.Get("idempotency-key"))
	require.Empty(t, md.Get("x-user-id"), "identity is the certificate's and the assertion's, never a header")
}

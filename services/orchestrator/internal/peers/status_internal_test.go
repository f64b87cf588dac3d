package peers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/platform/saga"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

// paymentStub answers ProcessPayment with a fixed payment status.
type paymentStub struct {
	paymentv1.PaymentServiceClient
	status paymentv1.PaymentStatus
}

func (s paymentStub) ProcessPayment(context.Context, *paymentv1.ProcessPaymentRequest, ...grpc.CallOption) (*paymentv1.ProcessPaymentResponse, error) {
	return &paymentv1.ProcessPaymentResponse{Payment: &paymentv1.Payment{Status: s.status, DeclineReason: "card_declined"}}, nil
}

// inventoryStub answers ReserveStock with a fixed reservation status.
type inventoryStub struct {
	inventoryv1.InventoryServiceClient
	status inventoryv1.ReservationStatus
}

func (s inventoryStub) ReserveStock(context.Context, *inventoryv1.ReserveStockRequest, ...grpc.CallOption) (*inventoryv1.ReserveStockResponse, error) {
	return &inventoryv1.ReserveStockResponse{Reservation: &inventoryv1.Reservation{Status: s.status, RejectReason: "insufficient_stock"}}, nil
}

// Only CAPTURED and RESERVED let the saga go on: a payment or reservation
// that a compensation already voided or released must fail the step, or the
// saga would confirm an order that holds no money or stock. Those, DECLINED
// and REJECTED are final answers that the call took nothing; a status that
// is none of them is not a documented answer, so its outcome is unknown.
func TestOnlyCaptureAndReservationSucceed(t *testing.T) {
	ctx := context.Background()
	for st, want := range map[paymentv1.PaymentStatus]checkout.Payment{
		paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED: {},
		paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED: {Declined: true, Reason: "card_declined"},
		paymentv1.PaymentStatus_PAYMENT_STATUS_VOIDED:   {Declined: true, Reason: "payment_voided"},
		paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED: {Declined: true, Reason: "payment_refunded"},
	} {
		got, err := Payments{Client: paymentStub{status: st}}.Charge(ctx, "k", checkout.Order{})
		require.NoError(t, err)
		require.Equal(t, want, got, st.String())
	}
	for st, want := range map[inventoryv1.ReservationStatus]checkout.Reservation{
		inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED: {},
		inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED: {Rejected: true, Reason: "insufficient_stock"},
		inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED: {Rejected: true, Reason: "reservation_released"},
	} {
		got, err := Inventory{Client: inventoryStub{status: st}}.Reserve(ctx, "k", "o", nil)
		require.NoError(t, err)
		require.Equal(t, want, got, st.String())
	}
	_, err := Payments{Client: paymentStub{status: paymentv1.PaymentStatus_PAYMENT_STATUS_UNSPECIFIED}}.Charge(ctx, "k", checkout.Order{})
	require.ErrorContains(t, err, "unexpected payment status")
	require.False(t, saga.IsPermanent(err), "an undocumented answer is an unknown outcome")
	_, err = Inventory{Client: inventoryStub{status: inventoryv1.ReservationStatus_RESERVATION_STATUS_UNSPECIFIED}}.Reserve(ctx, "k", "o", nil)
	require.ErrorContains(t, err, "unexpected reservation status")
	require.False(t, saga.IsPermanent(err))
}

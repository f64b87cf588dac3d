// Package grpcclient implements the checkout saga's view of the payment,
// inventory and order services over their gRPC APIs. Every call carries the
// step's idempotency key (metadata idempotency-key); the connections,
// dialed with the orchestrator's certificate, prove its identity, and the
// steps' contexts carry the user they act for, sent as a signed
// on-behalf-of assertion. The services scope idempotency keys by the
// calling service, so a step's key is the same whichever replica calls.
// Errors are classified here, once: Unavailable, DeadlineExceeded, Aborted,
// ResourceExhausted and Canceled are transient (the engine retries them);
// every other code is a permanent failure.
package grpcclient

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/saga"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

var (
	_ checkout.Payments  = Payments{}
	_ checkout.Inventory = Inventory{}
	_ checkout.Orders    = Orders{}
)

// outgoing returns ctx with the idempotency key as outgoing metadata.
func outgoing(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, key)
}

// classify marks err permanent unless its gRPC code is worth retrying.
func classify(rpc string, err error) error {
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%s: %w", rpc, err)
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted, codes.Canceled:
		return err
	}
	return saga.Permanent(err)
}

// Payments is checkout.Payments over PaymentService.
type Payments struct {
	Client paymentv1.PaymentServiceClient
}

// Charge implements checkout.Payments.
func (p Payments) Charge(ctx context.Context, key string, o checkout.Order) (checkout.Payment, error) {
	resp, err := p.Client.ProcessPayment(outgoing(ctx, key), &paymentv1.ProcessPaymentRequest{
		OrderId:       o.OrderID,
		Amount:        &commonv1.Money{CurrencyCode: o.Currency, AmountMinor: o.AmountMinor},
		PaymentMethod: o.PaymentMethod,
	})
	if err != nil {
		return checkout.Payment{}, classify("ProcessPayment", err)
	}
	// Only a capture lets the saga go on. DECLINED is the usual failure;
	// VOIDED or REFUNDED mean a compensation already ran for this order (an
	// operator's abort raced the step), so nothing is captured either.
	switch pay := resp.GetPayment(); pay.GetStatus() {
	case paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED:
		return checkout.Payment{}, nil
	case paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED:
		return checkout.Payment{Declined: true, Reason: pay.GetDeclineReason()}, nil
	default:
		return checkout.Payment{Declined: true, Reason: "payment_" + strings.ToLower(strings.TrimPrefix(pay.GetStatus().String(), "PAYMENT_STATUS_"))}, nil
	}
}

// Refund implements checkout.Payments.
func (p Payments) Refund(ctx context.Context, key, orderID, reason string) error {
	_, err := p.Client.RefundPayment(outgoing(ctx, key), &paymentv1.RefundPaymentRequest{OrderId: orderID, Reason: reason})
	return classify("RefundPayment", err)
}

// Inventory is checkout.Inventory over InventoryService.
type Inventory struct {
	Client inventoryv1.InventoryServiceClient
}

// Reserve implements checkout.Inventory.
func (i Inventory) Reserve(ctx context.Context, key, orderID string, items []checkout.Item) (checkout.Reservation, error) {
	req := &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: make([]*inventoryv1.ReservationItem, len(items))}
	for n, it := range items {
		req.Items[n] = &inventoryv1.ReservationItem{Sku: it.SKU, Quantity: it.Quantity}
	}
	resp, err := i.Client.ReserveStock(outgoing(ctx, key), req)
	if err != nil {
		return checkout.Reservation{}, classify("ReserveStock", err)
	}
	// Only a reservation lets the saga go on; RELEASED means a compensation
	// already ran for this order, so no stock is held.
	switch r := resp.GetReservation(); r.GetStatus() {
	case inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED:
		return checkout.Reservation{}, nil
	case inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED:
		return checkout.Reservation{Rejected: true, Reason: r.GetRejectReason()}, nil
	default:
		return checkout.Reservation{Rejected: true, Reason: "reservation_" + strings.ToLower(strings.TrimPrefix(r.GetStatus().String(), "RESERVATION_STATUS_"))}, nil
	}
}

// Release implements checkout.Inventory.
func (i Inventory) Release(ctx context.Context, key, orderID string) error {
	_, err := i.Client.ReleaseStock(outgoing(ctx, key), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
	return classify("ReleaseStock", err)
}

// Orders is checkout.Orders over OrderService.
type Orders struct{ Client orderv1.OrderServiceClient }

// Confirm implements checkout.Orders.
func (o Orders) Confirm(ctx context.Context, key, orderID string) error {
	_, err := o.Client.ConfirmOrder(outgoing(ctx, key), &orderv1.ConfirmOrderRequest{OrderId: orderID})
	return classify("ConfirmOrder", err)
}

// Cancel implements checkout.Orders.
func (o Orders) Cancel(ctx context.Context, key, orderID, reason string) error {
	_, err := o.Client.CancelOrder(outgoing(ctx, key), &orderv1.CancelOrderRequest{OrderId: orderID, Reason: reason})
	return classify("CancelOrder", err)
}

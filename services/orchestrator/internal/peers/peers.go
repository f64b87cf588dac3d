// Package peers holds the orchestrator's clients of the services it calls:
// the checkout saga's view of the payment, inventory and order services over
// their gRPC APIs. Every call carries the step's idempotency key (metadata
// idempotency-key); the connections, dialed with the orchestrator's
// certificate, prove its identity, and the steps' contexts carry the user they act for, sent as a signed
// on-behalf-of assertion. The services scope idempotency keys by the
// calling service, so a step's key is the same whichever replica calls.
// Errors are classified here, once, by what they tell about the call's
// effect (classOf): only a refusal the service documents as doing nothing
// is a refusal (saga.Permanent: the saga turns back and the refused step is
// not compensated). Every other error — Internal, Unknown, DeadlineExceeded,
// Unavailable, ResourceExhausted, Aborted, a lost reply, an error that is
// not a status — leaves the outcome unknown: the engine retries the step
// with the same key and, if the saga turns back, compensates it without
// calling it again.
package peers

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

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

// RPCs the saga calls, as named in errors and in classOf.
const (
	rpcProcessPayment = "ProcessPayment"
	rpcRefundPayment  = "RefundPayment"
	rpcReserveStock   = "ReserveStock"
	rpcReleaseStock   = "ReleaseStock"
	rpcConfirmOrder   = "ConfirmOrder"
	rpcCancelOrder    = "CancelOrder"
)

// class is what an error of a step call tells about the call's effect.
type class int

const (
	// unknownOutcome: the call may have taken effect. Retried with the same
	// idempotency key; compensated if the saga turns back.
	unknownOutcome class = iota
	// refused: a documented refusal; the call did nothing under its key.
	refused
)

func (c class) String() string {
	if c == refused {
		return "refused"
	}
	return "unknown outcome"
}

// Order service's FailedPrecondition for an order that is not PENDING
// (services/order README: ConfirmOrder "FailedPrecondition for a CANCELLED
// order"; message "order_id: order is CANCELLED and cannot be confirmed").
const (
	notConfirmablePrefix = "order_id: order is "
	notConfirmableSuffix = " and cannot be confirmed"
)

// classOf tells the documented refusals among the errors of rpc. The saga's
// business refusals mostly come as answers, not errors (a DECLINED payment,
// a REJECTED reservation: see Charge and Reserve); the one that comes as an
// error is ConfirmOrder's FailedPrecondition for an order that is no
// longer PENDING. Everything else is an unknown outcome, FailedPrecondition
// included when its message is another (the idempotency guard's "key was
// already used with a different request": an earlier call under the key
// may have acted), and every error of a compensation (the engine retries
// those until they succeed anyway).
func classOf(rpc string, err error) class {
	st, ok := status.FromError(err)
	if !ok {
		return unknownOutcome
	}
	msg := st.Message()
	if rpc == rpcConfirmOrder && st.Code() == codes.FailedPrecondition &&
		strings.HasPrefix(msg, notConfirmablePrefix) && strings.HasSuffix(msg, notConfirmableSuffix) {
		return refused
	}
	return unknownOutcome
}

// classify names rpc in err and marks it saga.Permanent if it is a
// documented refusal; any other error is returned as one of unknown outcome.
func classify(rpc string, err error) error {
	if err == nil {
		return nil
	}
	c := classOf(rpc, err)
	err = fmt.Errorf("%s: %w", rpc, err)
	if c == refused {
		return saga.Permanent(err)
	}
	return err
}

// Payments is checkout.Payments over PaymentService.
type Payments struct {
	Client paymentv1.PaymentServiceClient
}

// Charge implements checkout.Payments.
func (p Payments) Charge(ctx context.Context, key string, o checkout.Order) (checkout.Payment, error) {
	resp, err := p.Client.ProcessPayment(outgoing(ctx, key), &paymentv1.ProcessPaymentRequest{
		OrderId:       o.OrderID,
		Amount:        commonv1.NewMoney(o.Currency, o.AmountMinor),
		PaymentMethod: o.PaymentMethod,
	})
	if err != nil {
		return checkout.Payment{}, classify(rpcProcessPayment, err)
	}
	// Only a capture lets the saga go on. DECLINED is the business refusal;
	// VOIDED or REFUNDED mean a compensation already ran for this order (an
	// operator's abort raced the step), so nothing is captured either: all
	// three are final answers that this call captured nothing. Any other
	// status is not a documented answer: its outcome is unknown.
	switch pay := resp.GetPayment(); pay.GetStatus() {
	case paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED:
		return checkout.Payment{}, nil
	case paymentv1.PaymentStatus_PAYMENT_STATUS_DECLINED:
		return checkout.Payment{Declined: true, Reason: pay.GetDeclineReason()}, nil
	case paymentv1.PaymentStatus_PAYMENT_STATUS_VOIDED, paymentv1.PaymentStatus_PAYMENT_STATUS_REFUNDED:
		return checkout.Payment{Declined: true, Reason: "payment_" + strings.ToLower(strings.TrimPrefix(pay.GetStatus().String(), "PAYMENT_STATUS_"))}, nil
	default:
		return checkout.Payment{}, fmt.Errorf("%s: unexpected payment status %s", rpcProcessPayment, pay.GetStatus())
	}
}

// Refund implements checkout.Payments.
func (p Payments) Refund(ctx context.Context, key, orderID, reason string) error {
	_, err := p.Client.RefundPayment(outgoing(ctx, key), &paymentv1.RefundPaymentRequest{OrderId: orderID, Reason: reason})
	return classify(rpcRefundPayment, err)
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
		return checkout.Reservation{}, classify(rpcReserveStock, err)
	}
	// Only a reservation lets the saga go on. REJECTED (insufficient_stock)
	// is the business refusal; RELEASED (the tombstone) means a
	// compensation already ran for this order, so no stock is held. Any
	// other status is not a documented answer: its outcome is unknown.
	switch r := resp.GetReservation(); r.GetStatus() {
	case inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED:
		return checkout.Reservation{}, nil
	case inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED:
		return checkout.Reservation{Rejected: true, Reason: r.GetRejectReason()}, nil
	case inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED:
		return checkout.Reservation{Rejected: true, Reason: "reservation_released"}, nil
	default:
		return checkout.Reservation{}, fmt.Errorf("%s: unexpected reservation status %s", rpcReserveStock, r.GetStatus())
	}
}

// Release implements checkout.Inventory.
func (i Inventory) Release(ctx context.Context, key, orderID string) error {
	_, err := i.Client.ReleaseStock(outgoing(ctx, key), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
	return classify(rpcReleaseStock, err)
}

// Orders is checkout.Orders over OrderService.
type Orders struct{ Client orderv1.OrderServiceClient }

// Confirm implements checkout.Orders.
func (o Orders) Confirm(ctx context.Context, key, orderID string) error {
	_, err := o.Client.ConfirmOrder(outgoing(ctx, key), &orderv1.ConfirmOrderRequest{OrderId: orderID})
	return classify(rpcConfirmOrder, err)
}

// Cancel implements checkout.Orders.
func (o Orders) Cancel(ctx context.Context, key, orderID, reason string) error {
	_, err := o.Client.CancelOrder(outgoing(ctx, key), &orderv1.CancelOrderRequest{OrderId: orderID, Reason: reason})
	return classify(rpcCancelOrder, err)
}

// StalePending implements reconciler.Orders: one page of the orders still
// PENDING that were placed more than olderThan ago, as saga contexts (with
// checkout.Permissions), and the next page's token ("" after the last).
// The call carries no user: the orchestrator lists for itself.
func (o Orders) StalePending(ctx context.Context, olderThan time.Duration, pageToken string) ([]checkout.Order, string, error) {
	resp, err := o.Client.ListStalePendingOrders(ctx, &orderv1.ListStalePendingOrdersRequest{
		OlderThan: durationpb.New(olderThan), PageToken: pageToken,
	})
	if err != nil {
		return nil, "", fmt.Errorf("ListStalePendingOrders: %w", err)
	}
	out := make([]checkout.Order, len(resp.GetOrders()))
	for i, p := range resp.GetOrders() {
		out[i] = checkout.Order{
			OrderID:       p.GetOrderId(),
			CustomerID:    p.GetCustomerId(),
			AmountMinor:   p.GetTotal().GetAmountMinor(),
			Currency:      p.GetTotal().GetCurrencyCode(),
			PaymentMethod: p.GetPaymentMethod(),
			PlacedBy:      p.GetPlacedBy(),
			Permissions:   checkout.Permissions,
			Items:         make([]checkout.Item, len(p.GetItems())),
		}
		for j, it := range p.GetItems() {
			out[i].Items[j] = checkout.Item{SKU: it.GetSku(), Quantity: it.GetQuantity()}
		}
	}
	return out, resp.GetNextPageToken(), nil
}

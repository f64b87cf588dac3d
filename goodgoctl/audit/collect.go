package audit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/grpcclient"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// OrderSagaType is the saga type whose correlation id is an order id.
const OrderSagaType = "order_checkout"

// Clients are the four APIs the auditor reads. Their calls must carry the
// credentials of an operator (a bearer token with the operator role):
// only operators may list every saga and read every order, payment and
// reservation.
type Clients struct {
	Orders    orderv1.OrderServiceClient
	Payments  paymentv1.PaymentServiceClient
	Inventory inventoryv1.InventoryServiceClient
	Sagas     orchestratorv1.SagaServiceClient
	// Views is the order read model (CQRS); nil skips its check.
	Views orderv1.OrderQueryServiceClient
}

// CollectOptions tune Collect.
type CollectOptions struct {
	// Concurrency bounds the per-order reads in flight (default 8).
	Concurrency int
	// Now is the clock of Snapshot.TakenAt (default time.Now).
	Now func() time.Time
}

// Collect reads a Snapshot through the APIs: every order saga (paginated),
// each one's order, and the payment and reservation of each order whose
// saga is no longer running (by order id), then the catalog, and finally
// the newest saga again, to tell whether the snapshot is quiescent. Calls
// refused for the rate limit (RESOURCE_EXHAUSTED) are retried after the
// delay the server names, UNAVAILABLE ones shortly after, until ctx ends.
// A NOT_FOUND order, payment or reservation is absent from the snapshot;
// any other failure fails Collect.
func Collect(ctx context.Context, c Clients, opts CollectOptions) (*Snapshot, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Snapshot{
		Sagas: map[string][]*Saga{}, Orders: map[string]*Order{}, Payments: map[string]*Payment{},
		Reservations: map[string]*Reservation{}, Products: map[string]*Product{}, Views: map[string]*View{},
	}
	newest, anyRunning, err := listSagas(ctx, c.Sagas, s)
	if err != nil {
		return nil, err
	}
	if err := readOrders(ctx, c, s, opts.Concurrency); err != nil {
		return nil, err
	}
	if err := readProducts(ctx, c.Inventory, s); err != nil {
		return nil, err
	}
	var last *orchestratorv1.ListSagasResponse
	err = retry(ctx, func() (err error) {
		last, err = c.Sagas.ListSagas(ctx, &orchestratorv1.ListSagasRequest{PageSize: 1})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list sagas: %w", err)
	}
	again := ""
	if ls := last.GetSagas(); len(ls) > 0 {
		again = ls[0].GetSagaId()
	}
	s.Quiescent = !anyRunning && again == newest
	s.TakenAt = opts.Now()
	return s, nil
}

// listSagas adds every order saga to s and returns the id of the newest
// saga of any type and whether any order saga was running.
func listSagas(ctx context.Context, sagas orchestratorv1.SagaServiceClient, s *Snapshot) (newest string, anyRunning bool, err error) {
	token := ""
	for {
		var page *orchestratorv1.ListSagasResponse
		err := retry(ctx, func() (err error) {
			page, err = sagas.ListSagas(ctx, &orchestratorv1.ListSagasRequest{PageSize: 100, PageToken: token})
			return err
		})
		if err != nil {
			return "", false, fmt.Errorf("list sagas: %w", err)
		}
		for _, sg := range page.GetSagas() {
			if newest == "" {
				newest = sg.GetSagaId()
			}
			if sg.GetSagaType() != OrderSagaType {
				continue
			}
			v := &Saga{
				ID: sg.GetSagaId(), OrderID: sg.GetCorrelationId(), FailureReason: sg.GetFailureReason(),
				State: strings.TrimPrefix(sg.GetState().String(), "SAGA_STATE_"),
			}
			if sg.GetDeadline() != nil {
				v.Deadline = sg.GetDeadline().AsTime()
			}
			anyRunning = anyRunning || running(v.State)
			s.Sagas[v.OrderID] = append(s.Sagas[v.OrderID], v)
		}
		if token = page.GetNextPageToken(); token == "" {
			return newest, anyRunning, nil
		}
	}
}

// readOrders reads, with n calls in flight, each saga's order and, for a
// saga no longer running, the order's payment and reservation.
func readOrders(ctx context.Context, c Clients, s *Snapshot, n int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		work = make(chan string)
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for range n {
		wg.Go(func() {
			for orderID := range work {
				settled := !running(s.Sagas[orderID][0].State)
				o, p, r, err := readOrder(ctx, c, orderID, settled)
				if err != nil {
					fail(err)
					continue
				}
				var v *View
				if settled && o != nil && c.Views != nil {
					if v, err = readView(ctx, c.Views, o); err != nil {
						fail(err)
						continue
					}
				}
				mu.Lock()
				if o != nil {
					s.Orders[orderID] = o
				}
				if p != nil {
					s.Payments[orderID] = p
				}
				if r != nil {
					s.Reservations[orderID] = r
				}
				if v != nil {
					s.Views[orderID] = v
				}
				mu.Unlock()
			}
		})
	}
	for orderID := range s.Sagas {
		select {
		case work <- orderID:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	return ctx.Err()
}

func readOrder(ctx context.Context, c Clients, orderID string, settled bool) (*Order, *Payment, *Reservation, error) {
	var (
		o *Order
		p *Payment
		r *Reservation
	)
	var ro *orderv1.GetOrderResponse
	err := retry(ctx, func() (err error) {
		ro, err = c.Orders.GetOrder(ctx, &orderv1.GetOrderRequest{OrderId: orderID})
		return err
	})
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		return nil, nil, nil, fmt.Errorf("get order %s: %w", orderID, err)
	default:
		o = orderFrom(ro.GetOrder())
	}
	if !settled {
		return o, nil, nil, nil
	}
	var rp *paymentv1.GetPaymentResponse
	err = retry(ctx, func() (err error) {
		rp, err = c.Payments.GetPayment(ctx, &paymentv1.GetPaymentRequest{OrderId: orderID})
		return err
	})
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		return nil, nil, nil, fmt.Errorf("get payment of order %s: %w", orderID, err)
	default:
		p = paymentFrom(rp.GetPayment())
	}
	var rr *inventoryv1.GetReservationResponse
	err = retry(ctx, func() (err error) {
		rr, err = c.Inventory.GetReservation(ctx, &inventoryv1.GetReservationRequest{OrderId: orderID})
		return err
	})
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		return nil, nil, nil, fmt.Errorf("get reservation of order %s: %w", orderID, err)
	default:
		r = reservationFrom(rr.GetReservation())
	}
	return o, p, r, nil
}

func readProducts(ctx context.Context, inv inventoryv1.InventoryServiceClient, s *Snapshot) error {
	token := ""
	for {
		var page *inventoryv1.GetProductsResponse
		err := retry(ctx, func() (err error) {
			page, err = inv.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageSize: 100, PageToken: token})
			return err
		})
		if err != nil {
			return fmt.Errorf("get products: %w", err)
		}
		for _, p := range page.GetProducts() {
			s.Products[p.GetSku()] = &Product{SKU: p.GetSku(), Available: p.GetAvailable(), Reserved: p.GetReserved()}
		}
		if token = page.GetNextPageToken(); token == "" {
			return nil
		}
	}
}

func orderFrom(o *orderv1.Order) *Order {
	v := &Order{
		ID: o.GetOrderId(), Status: strings.TrimPrefix(o.GetStatus().String(), "ORDER_STATUS_"),
		Currency: o.GetTotal().GetCurrencyCode(), Total: o.GetTotal().GetAmountMinor(),
		CancelReason: o.GetCancelReason(), Lines: map[string]int64{}, Version: o.GetVersion(),
	}
	for _, it := range o.GetItems() {
		v.Lines[it.GetSku()] += int64(it.GetQuantity())
	}
	return v
}

// readView reads o's view from the read model, asking for at least the
// version the write side has: the read model must reach it within the
// server's bound. A view that does not (UNAVAILABLE, after the retries of
// other UNAVAILABLE calls would hide it) or does not exist is returned as
// a View with Missing set, for Check to report; nil when the order service
// does not serve the read model.
func readView(ctx context.Context, views orderv1.OrderQueryServiceClient, o *Order) (*View, error) {
	var resp *orderv1.GetOrderViewResponse
	err := retryWhile(ctx, func() error {
		var err error
		resp, err = views.GetOrderView(ctx, &orderv1.GetOrderViewRequest{OrderId: o.ID, MinOrderVersion: o.Version})
		return err
	}, throttled)
	switch status.Code(err) {
	case codes.OK:
	case codes.Unimplemented:
		// An order service without the read side (an older release):
		// nothing to hold it to.
		return nil, nil
	case codes.NotFound, codes.Unavailable:
		return &View{OrderID: o.ID, Missing: status.Convert(err).Message()}, nil
	default:
		return nil, fmt.Errorf("get order view %s: %w", o.ID, err)
	}
	v := resp.GetOrder()
	return &View{
		OrderID: v.GetOrderId(), Status: strings.TrimPrefix(v.GetStatus().String(), "ORDER_STATUS_"),
		Currency: v.GetTotal().GetCurrencyCode(), Total: v.GetTotal().GetAmountMinor(), CancelReason: v.GetCancelReason(),
		Version: v.GetOrderVersion(), PaymentStatus: v.GetPaymentStatus(), InventoryStatus: v.GetInventoryStatus(),
	}, nil
}

func paymentFrom(p *paymentv1.Payment) *Payment {
	return &Payment{
		ID: p.GetPaymentId(), OrderID: p.GetOrderId(), Status: strings.TrimPrefix(p.GetStatus().String(), "PAYMENT_STATUS_"),
		Currency: p.GetAmount().GetCurrencyCode(), DeclineReason: p.GetDeclineReason(),
		Amount: p.GetAmount().GetAmountMinor(), Refunded: p.GetRefunded().GetAmountMinor(),
	}
}

func reservationFrom(r *inventoryv1.Reservation) *Reservation {
	v := &Reservation{
		ID: r.GetReservationId(), OrderID: r.GetOrderId(), RejectReason: r.GetRejectReason(),
		Status: strings.TrimPrefix(r.GetStatus().String(), "RESERVATION_STATUS_"), Lines: map[string]int64{},
	}
	for _, it := range r.GetItems() {
		v.Lines[it.GetSku()] += int64(it.GetQuantity())
	}
	return v
}

// retryBackoff is the wait before retrying an UNAVAILABLE call, or a
// RESOURCE_EXHAUSTED one that names no delay.
const retryBackoff = 100 * time.Millisecond

// retry runs call until it succeeds, fails otherwise than for the rate
// limit or unavailability, or ctx ends.
func retry(ctx context.Context, call func() error) error {
	return retryWhile(ctx, call, func(c codes.Code) bool { return throttled(c) || c == codes.Unavailable })
}

// throttled is the rate limit's code.
func throttled(c codes.Code) bool { return c == codes.ResourceExhausted }

// retryWhile runs call until it succeeds, fails with a code again does not
// accept, or ctx ends.
func retryWhile(ctx context.Context, call func() error, again func(codes.Code) bool) error {
	for {
		err := call()
		if err == nil || !again(status.Code(err)) {
			return err
		}
		wait := retryBackoff
		if d, limited := grpcclient.RetryDelay(err); limited {
			wait = max(d, time.Millisecond)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

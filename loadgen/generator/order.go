package generator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/idempotency"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

const (
	callTimeout = 10 * time.Second // one RPC
)

// one places order i, repeats it if it is one of the retried, follows it
// to its terminal state and records what became of it.
func (g *gen) one(ctx context.Context, i int) {
	g.rec.begin()
	o := outcome{kind: g.picker.next()}
	defer func() { g.rec.finish(o) }()

	sh := g.cfg.Shoppers[i%len(g.cfg.Shoppers)]
	req := g.request(o.kind, sh, i)
	key := fmt.Sprintf("loadgen-%s-%d", g.runID, i)
	octx, cancel := context.WithTimeout(ctx, g.cfg.FollowTimeout)
	defer cancel()
	octx = metadata.AppendToOutgoingContext(octx, authz.BearerMetadataKey, "Bearer "+sh.Token)

	sent := time.Now()
	order, err := g.place(octx, req, key, &o)
	o.place = time.Since(sent)
	if err != nil {
		if ctx.Err() != nil {
			o.abandoned = true
			return
		}
		o.placeErr = status.Code(err).String()
		return
	}
	o.placed = true
	g.rec.placedOne()

	if retried(i, g.cfg.RetryFraction) {
		again, err := g.place(octx, req, key, &o)
		switch {
		case err != nil:
			o.retry = retryFailed
		case again.GetOrderId() == order.GetOrderId():
			o.retry = retrySame
		default:
			o.retry = retryDifferent
		}
	}

	final := g.follow(ctx, octx, order.GetOrderId(), &o)
	if final == nil {
		return
	}
	o.status = final.GetStatus()
	o.reason = final.GetCancelReason()
	o.observed = time.Since(sent)
	o.saga = final.GetUpdateTime().AsTime().Sub(final.GetCreateTime().AsTime())
	if o.saga <= 0 { // timestamps missing: the client's view is all there is
		o.saga = o.observed
	}
	if g.sagas != nil {
		g.saga(octx, order.GetOrderId(), &o)
	}
}

// request is order i of kind k for shopper sh.
func (g *gen) request(k Kind, sh Shopper, i int) *orderv1.PlaceOrderRequest {
	req := &orderv1.PlaceOrderRequest{
		CustomerId: sh.ID,
		ShippingAddress: &orderv1.Address{
			Name: "Load Generator", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", CountryCode: "US",
		},
		PaymentMethod: g.cfg.PaymentMethod,
	}
	skus := g.cfg.GoodSKUs
	switch k {
	case KindOutOfStock:
		req.Items = []*orderv1.OrderItemInput{{Sku: g.cfg.OutOfStockSKU, Quantity: g.cfg.OutOfStockQuantity}}
	case KindHot:
		req.Items = []*orderv1.OrderItemInput{{Sku: g.cfg.HotSKU, Quantity: 1}}
	case KindDecline:
		req.PaymentMethod = g.cfg.DeclineMethod
		fallthrough
	default:
		// One line, or two different SKUs every other order.
		req.Items = []*orderv1.OrderItemInput{{Sku: skus[i%len(skus)], Quantity: 1}}
		if i%2 == 1 && len(skus) > 1 {
			req.Items = append(req.Items, &orderv1.OrderItemInput{Sku: skus[(i+1)%len(skus)], Quantity: 1})
		}
	}
	return req
}

// place calls PlaceOrder with key as a well-behaved client: it waits out
// ResourceExhausted as its RetryInfo asks and retries Aborted (a duplicate
// still running, a serialization failure), Unavailable and
// DeadlineExceeded with backoff until ctx (the order's FollowTimeout)
// ends, always with the same key.
func (g *gen) place(ctx context.Context, req *orderv1.PlaceOrderRequest, key string, o *outcome) (*orderv1.Order, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, key)
	for attempt := 1; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		resp, err := g.orders.PlaceOrder(cctx, req)
		cancel()
		if err == nil {
			return resp.GetOrder(), nil
		}
		if wait, limited := grpcclient.RetryDelay(err); limited {
			o.throttled++
			if !sleep(ctx, wait) {
				return nil, err
			}
			attempt--
			continue
		}
		switch status.Code(err) {
		case codes.Aborted, codes.Unavailable, codes.DeadlineExceeded:
			if ctx.Err() == nil {
				o.clientRetry++
				if sleep(ctx, backoff(attempt)) {
					continue
				}
			}
		default:
		}
		return nil, err
	}
}

// follow polls GetOrder until the order is CONFIRMED or CANCELLED and
// returns it, the pauses growing by half from PollInterval to
// MaxPollInterval so that a slow system is not flooded with reads; nil when octx ended first (a time-out, or the run's ctx
// ended: abandoned) or GetOrder failed for good.
func (g *gen) follow(ctx, octx context.Context, id string, o *outcome) *orderv1.Order {
	ended := func() *orderv1.Order {
		if ctx.Err() != nil {
			o.abandoned = true
		} else {
			o.timedOut = true
		}
		return nil
	}
	wait := g.cfg.PollInterval
	for {
		cctx, cancel := context.WithTimeout(octx, callTimeout)
		resp, err := g.orders.GetOrder(cctx, &orderv1.GetOrderRequest{OrderId: id})
		cancel()
		switch {
		case err == nil:
			if s := resp.GetOrder().GetStatus(); s == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED || s == orderv1.OrderStatus_ORDER_STATUS_CANCELLED {
				return resp.GetOrder()
			}
		case octx.Err() != nil:
			return ended()
		default:
			if wait, limited := grpcclient.RetryDelay(err); limited {
				o.throttled++
				if !sleep(octx, wait) {
					return ended()
				}
				continue
			}
			switch status.Code(err) {
			case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
				// Transient: poll again.
			default:
				o.followErr = status.Code(err).String()
				return nil
			}
		}
		if !sleep(octx, wait) {
			return ended()
		}
		wait = min(wait*3/2, g.cfg.MaxPollInterval)
	}
}

// saga reads the order's saga until it reaches a final state (an order
// may be terminal while its saga still compensates) and records that
// state; a saga that does not end before octx does is recorded as it was.
func (g *gen) saga(octx context.Context, orderID string, o *outcome) {
	last := ""
	for {
		cctx, cancel := context.WithTimeout(octx, callTimeout)
		resp, err := g.sagas.ListSagas(cctx, &orchestratorv1.ListSagasRequest{CorrelationId: orderID})
		cancel()
		if err == nil && len(resp.GetSagas()) > 0 {
			st := resp.GetSagas()[0].GetState()
			last = strings.TrimPrefix(st.String(), "SAGA_STATE_")
			if st == orchestratorv1.SagaState_SAGA_STATE_COMPLETED || st == orchestratorv1.SagaState_SAGA_STATE_COMPENSATED ||
				st == orchestratorv1.SagaState_SAGA_STATE_PARKED {
				o.sagaState = last
				return
			}
		}
		wait := g.cfg.PollInterval
		if err != nil {
			if d, limited := grpcclient.RetryDelay(err); limited {
				o.throttled++
				wait = d
			} else if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded {
				o.sagaErr = c.String()
				return
			}
		}
		if !sleep(octx, wait) {
			if last == "" {
				last = "NOT_FOUND"
			}
			o.sagaState = last
			return
		}
	}
}

// backoff is the pause after failed attempt n (1, 2, …): 100ms doubling
// up to 3.2s.
func backoff(n int) time.Duration {
	return 100 * time.Millisecond << min(n-1, 5)
}

// sleep waits d; false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

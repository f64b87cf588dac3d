package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/goodgoctl/audit"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/grpcclient"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// readModelBound is how long the read model may take to reach the write
// side once the sagas have ended (issue 11): the projector's lag is tens
// of milliseconds, the restart of a killed order binary a few seconds.
const readModelBound = 30 * time.Second

// TestReadModelEqualsTheWriteSide places a burst of orders of every
// outcome (good, declined, over the payment limit, out of stock: payment
// refunded), SIGKILLs the order binary, which hosts the projector, in the
// middle of it and restarts it, and then holds the read model (CQRS) to
// the write side order by order through the consistency auditor, within a
// bounded time. It also reads the orders back through OrderQueryService as
// their customers, with read-your-writes.
func TestReadModelEqualsTheWriteSide(t *testing.T) {
	e := NewEnv(t, envOptions{race: true})
	available, _ := e.Stock(t, "SKU-LIMITED")
	type placed struct {
		o  *orderv1.Order
		by shopper
	}
	var orders []placed
	byID := map[string]shopper{}
	for _, s := range e.shoppers {
		byID[s.id] = s
	}
	place := func(lines []*orderv1.OrderItemInput, card string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		o, err := e.PlaceOrder(ctx, lines, card) // as the next shopper
		require.NoError(t, err)
		orders = append(orders, placed{o: o, by: byID[o.GetCustomerId()]})
	}
	burst := func(n int) {
		for range n {
			place(items("SKU-MOUSE", 1), cardOK)
			place(items("SKU-WEBCAM", 1), cardDecline)
			place(items("SKU-LAPTOP", 8), cardOK)                 // over the payment limit
			place(items("SKU-LIMITED", int(available)+1), cardOK) // out of stock: refunded
		}
	}
	burst(5)
	// The projector dies with its batch half applied, or its offsets not
	// committed: the restarted one redelivers, the inbox skips.
	e.Kill(svcOrder)
	e.Restart(svcOrder)
	burst(5)
	ids := make([]string, len(orders))
	for i, p := range orders {
		ids[i] = p.o.GetOrderId()
	}
	e.WaitOrders(t, ids, sagaTimeout)

	clients := audit.Clients{
		Orders:   orderv1.NewOrderServiceClient(e.conn(svcOrder, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator)))),
		Views:    orderv1.NewOrderQueryServiceClient(e.conn(svcOrder, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator)))),
		Payments: e.Payments, Inventory: e.Inventory, Sagas: e.Sagas,
	}
	var last *audit.Report
	ok := poll(readModelBound, 200*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		s, err := audit.Collect(ctx, clients, audit.CollectOptions{})
		if err != nil {
			return false
		}
		last = audit.Check(s, time.Minute)
		return len(last.Snapshot.Views) >= len(ids) && last.Count()[audit.KindReadModelMismatch] == 0
	})
	require.True(t, ok, "the read model did not equal the write side within %s: %v", readModelBound, last)
	require.Empty(t, last.Violations)

	views := orderv1.NewOrderQueryServiceClient(e.conn(svcOrder))
	for _, p := range orders[:8] {
		ctx, cancel := context.WithTimeout(authtest.AsUser(context.Background(), p.by.token), 10*time.Second)
		v, err := views.GetOrderView(ctx, &orderv1.GetOrderViewRequest{OrderId: p.o.GetOrderId(), MinOrderVersion: p.o.GetVersion()})
		cancel()
		require.NoError(t, err)
		require.Equal(t, p.by.id, v.GetOrder().GetCustomerId())
		require.NotEmpty(t, v.GetOrder().GetSagaOutcome())
	}
	p := orders[0]
	ctx, cancel := context.WithTimeout(authtest.AsUser(context.Background(), p.by.token), 10*time.Second)
	defer cancel()
	page, err := views.ListOrders(ctx, &orderv1.ListOrdersRequest{CustomerId: p.by.id, PageSize: 100})
	require.NoError(t, err)
	require.NotEmpty(t, page.GetOrders())
	_, err = views.ListOrders(ctx, &orderv1.ListOrdersRequest{CustomerId: "someone-else"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	// `order rebuild-read-model` replays the topics into a shadow view and
	// swaps it in while an operator reads every view in a loop: no read
	// fails, none sees an order's version go back.
	opViews := orderv1.NewOrderQueryServiceClient(e.conn(svcOrder, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator))))
	stop := make(chan struct{})
	readErr := make(chan error, 1)
	reads := 0
	go func() {
		defer close(readErr)
		seen := map[string]int64{}
		for {
			for _, id := range ids {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var v *orderv1.GetOrderViewResponse
				err := withinRateLimit(ctx, func() (err error) {
					v, err = opViews.GetOrderView(ctx, &orderv1.GetOrderViewRequest{OrderId: id})
					return err
				})
				cancel()
				if err != nil {
					readErr <- fmt.Errorf("read %s during the rebuild: %w", id, err)
					return
				}
				if ver := v.GetOrder().GetOrderVersion(); ver < seen[id] {
					readErr <- fmt.Errorf("order %s went back from version %d to %d during the rebuild", id, seen[id], ver)
					return
				}
				seen[id] = v.GetOrder().GetOrderVersion()
				reads++
			}
		}
	}()
	began := time.Now()
	out, code := e.runCommand(t, svcOrder, e.env(svcOrder), "rebuild-read-model")
	t.Logf("rebuild-read-model took %v:\n%s", time.Since(began), out)
	close(stop)
	require.NoError(t, <-readErr)
	require.Equal(t, 0, code, "order rebuild-read-model:\n%s", out)
	t.Logf("%d reads during the rebuild, none failed or went back", reads)
	require.Positive(t, reads)
	e.CheckInvariants(t) // the rebuilt view equals the write side
}

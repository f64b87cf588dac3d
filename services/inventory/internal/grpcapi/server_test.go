package grpcapi_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/servicetest"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

func newOrderID() string { return uuid.Must(uuid.NewV7()).String() }

func newKey() string { return uuid.NewString() }

func items(pairs ...any) []*inventoryv1.ReservationItem {
	var out []*inventoryv1.ReservationItem
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, &inventoryv1.ReservationItem{Sku: pairs[i].(string), Quantity: int32(pairs[i+1].(int))})
	}
	return out
}

// requireStatus asserts err is a status with code whose message starts
// with prefix.
func requireStatus(t testing.TB, err error, code codes.Code, prefix string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status: %v", err)
	require.Equal(t, code, st.Code(), "message: %s", st.Message())
	require.True(t, strings.HasPrefix(st.Message(), prefix), "message %q does not start with %q", st.Message(), prefix)
}

func TestGetProducts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	t.Run("lists the seeded catalog in SKU order with version tokens", func(t *testing.T) {
		resp, err := b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{})
		require.NoError(t, err)
		require.Len(t, resp.GetProducts(), 9)
		require.Empty(t, resp.GetNextPageToken())
		cable := resp.GetProducts()[0]
		require.Equal(t, "SKU-CABLE", cable.GetSku())
		require.Equal(t, "USB-C cable", cable.GetName())
		require.Equal(t, "USD", cable.GetUnitPrice().GetCurrencyCode())
		require.EqualValues(t, 900, cable.GetUnitPrice().GetAmountMinor())
		require.EqualValues(t, 10000, cable.GetAvailable())
		require.NotEmpty(t, cable.GetVersionToken())
		require.NotNil(t, cable.GetUpdateTime())
	})

	t.Run("pages with opaque tokens", func(t *testing.T) {
		var skus []string
		token := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 3, "9 products in pages of 4")
			resp, err := b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageSize: 4, PageToken: token})
			require.NoError(t, err)
			for _, p := range resp.GetProducts() {
				skus = append(skus, p.GetSku())
			}
			if token = resp.GetNextPageToken(); token == "" {
				break
			}
		}
		require.Len(t, skus, 9)
		require.IsIncreasing(t, skus)
	})

	t.Run("gives no next page token on the page that ends the catalog", func(t *testing.T) {
		resp, err := b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageSize: 9})
		require.NoError(t, err)
		require.Len(t, resp.GetProducts(), 9)
		require.Empty(t, resp.GetNextPageToken())
		resp, err = b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageSize: 8})
		require.NoError(t, err)
		require.NotEmpty(t, resp.GetNextPageToken())
		resp, err = b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageSize: 8, PageToken: resp.GetNextPageToken()})
		require.NoError(t, err)
		require.Len(t, resp.GetProducts(), 1)
		require.Equal(t, "SKU-WEBCAM", resp.GetProducts()[0].GetSku())
		require.Empty(t, resp.GetNextPageToken())
	})

	t.Run("returns named SKUs in request order", func(t *testing.T) {
		resp, err := b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{Skus: []string{"SKU-MOUSE", "SKU-CABLE", "SKU-MOUSE"}})
		require.NoError(t, err)
		require.Len(t, resp.GetProducts(), 2)
		require.Equal(t, "SKU-MOUSE", resp.GetProducts()[0].GetSku())
		require.Equal(t, "SKU-CABLE", resp.GetProducts()[1].GetSku())
	})

	t.Run("names an unknown SKU", func(t *testing.T) {
		_, err := b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{Skus: []string{"SKU-MOUSE", "SKU-NOPE"}})
		requireStatus(t, err, codes.NotFound, `skus[1]: "SKU-NOPE" not found`)
	})

	t.Run("rejects malformed input naming the field", func(t *testing.T) {
		_, err := b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{Skus: []string{"sku mouse"}})
		requireStatus(t, err, codes.InvalidArgument, "skus[0]: ")
		_, err = b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageToken: "%%%"})
		requireStatus(t, err, codes.InvalidArgument, "page_token: ")
		_, err = b.client.GetProducts(ctx, &inventoryv1.GetProductsRequest{PageSize: -1})
		requireStatus(t, err, codes.InvalidArgument, "page_size: ")
	})
}

func TestGetStock(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	resp, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-LIMITED"})
	require.NoError(t, err)
	require.EqualValues(t, 5, resp.GetProduct().GetAvailable())
	require.Zero(t, resp.GetProduct().GetReserved())
	v, err := b.signer.Verify("product", "SKU-LIMITED", resp.GetProduct().GetVersionToken())
	require.NoError(t, err)
	require.EqualValues(t, 1, v)

	_, err = b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-NOPE"})
	requireStatus(t, err, codes.NotFound, `sku: "SKU-NOPE" not found`)
	_, err = b.client.GetStock(ctx, &inventoryv1.GetStockRequest{})
	requireStatus(t, err, codes.InvalidArgument, "sku: required")
}

func TestReserveStock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("reserves every item", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		orderID := newOrderID()
		resp, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{
			OrderId: orderID, Items: items("SKU-MOUSE", 2, "SKU-CABLE", 3),
		})
		require.NoError(t, err)
		r := resp.GetReservation()
		require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED, r.GetStatus())
		require.Equal(t, orderID, r.GetOrderId())
		require.NoError(t, uuid.Validate(r.GetReservationId()))
		require.Len(t, r.GetItems(), 2)
		require.Equal(t, "SKU-CABLE", r.GetItems()[0].GetSku(), "items come back in SKU order")
		avail, reserved := b.stock(t, "SKU-MOUSE")
		require.Equal(t, []int64{998, 2}, []int64{avail, reserved})
	})

	t.Run("comes back REJECTED when stock is short", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		resp, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{
			OrderId: newOrderID(), Items: items("SKU-MOUSE", 1, "SKU-LIMITED", 6),
		})
		require.NoError(t, err)
		require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED, resp.GetReservation().GetStatus())
		require.Equal(t, "insufficient_stock", resp.GetReservation().GetRejectReason())
		avail, _ := b.stock(t, "SKU-MOUSE")
		require.EqualValues(t, 1000, avail)
	})

	t.Run("rejects bad input naming the field and writes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		many := make([]*inventoryv1.ReservationItem, 51)
		for i := range many {
			many[i] = &inventoryv1.ReservationItem{Sku: fmt.Sprintf("SKU-%02d", i), Quantity: 1}
		}
		id := newOrderID()
		tests := []struct {
			name   string
			req    *inventoryv1.ReserveStockRequest
			prefix string
		}{
			{"missing order id", &inventoryv1.ReserveStockRequest{Items: items("SKU-MOUSE", 1)}, "order_id: required"},
			{"malformed order id", &inventoryv1.ReserveStockRequest{OrderId: "order-42", Items: items("SKU-MOUSE", 1)}, "order_id: not a UUID"},
			{"empty items", &inventoryv1.ReserveStockRequest{OrderId: id}, "items: must not be empty"},
			{"oversized items", &inventoryv1.ReserveStockRequest{OrderId: id, Items: many}, "items: must have at most 50"},
			{"zero quantity", &inventoryv1.ReserveStockRequest{OrderId: id, Items: items("SKU-MOUSE", 1, "SKU-CABLE", 0)}, "items[1].quantity: "},
			{"negative quantity", &inventoryv1.ReserveStockRequest{OrderId: id, Items: items("SKU-MOUSE", -1)}, "items[0].quantity: "},
			{"malformed sku", &inventoryv1.ReserveStockRequest{OrderId: id, Items: items("SKU-MOUSE", 1, "mouse", 1)}, "items[1].sku: "},
			{"duplicate sku", &inventoryv1.ReserveStockRequest{OrderId: id, Items: items("SKU-MOUSE", 1, "SKU-MOUSE", 1)}, "items[1].sku: duplicates items[0].sku"},
		}
		for _, tt := range tests {
			_, err := b.client.ReserveStock(withKey(ctx, newKey()), tt.req)
			requireStatus(t, err, codes.InvalidArgument, tt.prefix)
		}

		ok := &inventoryv1.ReserveStockRequest{OrderId: id, Items: items("SKU-MOUSE", 1)}
		_, err := b.client.ReserveStock(forCustomer(ctx), ok)
		requireStatus(t, err, codes.InvalidArgument, "idempotency-key")
		_, err = b.client.ReserveStock(withKey(ctx, strings.Repeat("k", 256)), ok)
		requireStatus(t, err, codes.InvalidArgument, "idempotency-key must be at most 255 characters")

		require.Zero(t, b.count(t, `SELECT count(*) FROM reservations`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox`))
		avail, _ := b.stock(t, "SKU-MOUSE")
		require.EqualValues(t, 1000, avail)
	})

	t.Run("names an unknown SKU and writes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{
			OrderId: newOrderID(), Items: items("SKU-MOUSE", 1, "SKU-GHOST", 1),
		})
		requireStatus(t, err, codes.NotFound, `items[1].sku: "SKU-GHOST" not found`)
		require.Zero(t, b.count(t, `SELECT count(*) FROM reservations`))
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox`))
	})

	t.Run("replays a retry with the same key without writing twice", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key := newKey()
		req := &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-DOCK", 4)}

		first, err := b.client.ReserveStock(withKey(ctx, key), req)
		require.NoError(t, err)
		var header metadata.MD
		again, err := b.client.ReserveStock(withKey(ctx, key), req, grpc.Header(&header))
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again), "the replay is the same response")
		require.Equal(t, []string{"true"}, header.Get(idempotency.ReplayedHeader))

		avail, reserved := b.stock(t, "SKU-DOCK")
		require.Equal(t, []int64{296, 4}, []int64{avail, reserved})
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations`))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox`))
	})

	t.Run("rejects the same key with a different body", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		key, orderID := newKey(), newOrderID()
		_, err := b.client.ReserveStock(withKey(ctx, key), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-DOCK", 1)})
		require.NoError(t, err)
		_, err = b.client.ReserveStock(withKey(ctx, key), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-DOCK", 2)})
		requireStatus(t, err, codes.FailedPrecondition, "idempotency-key was already used with a different request")
		_, err = b.client.ReserveStock(withKey(ctx, key), &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-DOCK", 1)})
		requireStatus(t, err, codes.FailedPrecondition, "idempotency-key")

		avail, _ := b.stock(t, "SKU-DOCK")
		require.EqualValues(t, 299, avail)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations`))
	})

	t.Run("returns the order's reservation to a new key and refuses different items", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		req := &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-DOCK", 1)}
		first, err := b.client.ReserveStock(withKey(ctx, newKey()), req)
		require.NoError(t, err)
		// A lost Redis key looks like this: the database still says once.
		second, err := b.client.ReserveStock(withKey(ctx, newKey()), req)
		require.NoError(t, err)
		require.Equal(t, first.GetReservation().GetReservationId(), second.GetReservation().GetReservationId())

		_, err = b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: req.GetOrderId(), Items: items("SKU-DOCK", 2)})
		requireStatus(t, err, codes.AlreadyExists, "order_id: ")
		avail, _ := b.stock(t, "SKU-DOCK")
		require.EqualValues(t, 299, avail)
	})

	t.Run("50 concurrent identical requests make exactly one reservation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		for _, sameKey := range []bool{true, false} {
			key := newKey()
			req := &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-WEBCAM", 2)}
			var (
				wg  sync.WaitGroup
				mu  sync.Mutex
				ids = map[string]int{}
			)
			for range 50 {
				wg.Go(func() {
					k := key
					if !sameKey {
						k = newKey() // as if Redis had lost every key
					}
					resp, err := b.client.ReserveStock(withKey(ctx, k), req)
					mu.Lock()
					defer mu.Unlock()
					switch status.Code(err) {
					case codes.OK:
						ids[resp.GetReservation().GetReservationId()]++
					case codes.Aborted: // "in progress": the client retries later
						ids["aborted"]++
					default:
						ids[err.Error()]++
					}
				})
			}
			wg.Wait()
			delete(ids, "aborted")
			require.Len(t, ids, 1, "same key %v: one reservation id and no errors: %v", sameKey, ids)
			require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations WHERE order_id = $1`, req.GetOrderId()))
			require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, req.GetOrderId()))
		}
		avail, reserved := b.stock(t, "SKU-WEBCAM")
		require.Equal(t, []int64{596, 4}, []int64{avail, reserved}, "two orders of 2 units")
	})

	t.Run("200 concurrent orders of one unit on a SKU with 100 reserve exactly 100", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		hot := b.addProduct(t, "HOT-1", 100)
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			statuses = map[inventoryv1.ReservationStatus]int{}
			errs     []error
		)
		for range 200 {
			wg.Go(func() {
				resp, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items(hot, 1)})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					errs = append(errs, err)
					return
				}
				statuses[resp.GetReservation().GetStatus()]++
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		require.Equal(t, 100, statuses[inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED])
		require.Equal(t, 100, statuses[inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED])
		avail, reserved := b.stock(t, hot)
		require.Equal(t, []int64{0, 100}, []int64{avail, reserved})
		require.Equal(t, 100, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`))
		require.Equal(t, 100, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'REJECTED'`))
	})
}

func TestReleaseStock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("returns exactly what was reserved, once, even when called concurrently", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		orderID := newOrderID()
		_, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-LAPTOP", 3, "SKU-DOCK", 2)})
		require.NoError(t, err)

		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for range 20 {
			wg.Go(func() {
				resp, err := b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
				if err == nil && resp.GetReservation().GetStatus() != inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED {
					err = fmt.Errorf("status %v", resp.GetReservation().GetStatus())
				}
				if err == nil && len(resp.GetReservation().GetItems()) != 2 {
					err = fmt.Errorf("items %v", resp.GetReservation().GetItems())
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Empty(t, errs)
		for sku, want := range map[string]int64{"SKU-LAPTOP": 200, "SKU-DOCK": 300} {
			avail, reserved := b.stock(t, sku)
			require.Equal(t, []int64{want, 0}, []int64{avail, reserved}, sku)
		}
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = 'inventory.released.v1'`))
	})

	t.Run("replays a retry with the same key", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		orderID, key := newOrderID(), newKey()
		_, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-DOCK", 2)})
		require.NoError(t, err)
		first, err := b.client.ReleaseStock(withKey(ctx, key), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		require.NoError(t, err)
		again, err := b.client.ReleaseStock(withKey(ctx, key), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		avail, _ := b.stock(t, "SKU-DOCK")
		require.EqualValues(t, 300, avail)
	})

	t.Run("succeeds without change for a rejected reservation", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		orderID := newOrderID()
		_, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-LIMITED", 9)})
		require.NoError(t, err)
		resp, err := b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		require.NoError(t, err)
		require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED, resp.GetReservation().GetStatus())
		avail, reserved := b.stock(t, "SKU-LIMITED")
		require.Equal(t, []int64{5, 0}, []int64{avail, reserved})
	})

	t.Run("releases an order that has no reservation yet, and a later reservation takes nothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		orderID := newOrderID()
		released, err := b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		require.NoError(t, err, "a compensation that overtakes its step succeeds")
		tomb := released.GetReservation()
		require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED, tomb.GetStatus())
		require.Equal(t, orderID, tomb.GetOrderId())
		require.NotEmpty(t, tomb.GetReservationId())
		require.Empty(t, tomb.GetItems())

		for _, its := range [][]*inventoryv1.ReservationItem{items("SKU-MOUSE", 2), items("SKU-DOCK", 1, "SKU-CABLE", 3)} {
			resp, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: its})
			require.NoError(t, err, "whatever it asks for, the late reservation gets the tombstone")
			require.True(t, proto.Equal(tomb, resp.GetReservation()), "got %v", resp.GetReservation())
		}
		for sku, want := range map[string]int64{"SKU-MOUSE": 1000, "SKU-DOCK": 300, "SKU-CABLE": 10000} {
			avail, reserved := b.stock(t, sku)
			require.Equal(t, []int64{want, 0}, []int64{avail, reserved}, sku)
		}
		again, err := b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		require.NoError(t, err)
		require.True(t, proto.Equal(tomb, again.GetReservation()))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_id = $1`, orderID), "one released event, nothing else")
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE aggregate_id = $1 AND event_type = 'inventory.released.v1' AND aggregate_version = 1`, orderID))
	})

	t.Run("rejects a malformed order id or a missing key", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		_, err := b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: "nope"})
		requireStatus(t, err, codes.InvalidArgument, "order_id: not a UUID")
		_, err = b.client.ReleaseStock(forCustomer(ctx), &inventoryv1.ReleaseStockRequest{OrderId: newOrderID()})
		requireStatus(t, err, codes.InvalidArgument, "idempotency-key")
		require.Zero(t, b.count(t, `SELECT count(*) FROM reservations`))
	})
}

func TestGetReservation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	orderID := newOrderID()
	reserved, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-DOCK", 2, "SKU-CABLE", 1)})
	require.NoError(t, err)

	t.Run("an operator reads an order's reservation with its items", func(t *testing.T) {
		for _, roles := range [][]string{{caller.RoleOperator}, {caller.RoleAdmin}} {
			resp, err := b.user.GetReservation(b.asUser(ctx, newKey(), "ops", roles...), &inventoryv1.GetReservationRequest{OrderId: orderID})
			require.NoError(t, err, "roles %v", roles)
			require.True(t, proto.Equal(reserved.GetReservation(), resp.GetReservation()), "got %v", resp.GetReservation())
		}
	})

	t.Run("an order without a reservation is NOT_FOUND, a malformed id INVALID_ARGUMENT", func(t *testing.T) {
		_, err := b.user.GetReservation(b.asUser(ctx, newKey(), "ops", caller.RoleOperator), &inventoryv1.GetReservationRequest{OrderId: newOrderID()})
		requireStatus(t, err, codes.NotFound, "")
		_, err = b.user.GetReservation(b.asUser(ctx, newKey(), "ops", caller.RoleOperator), &inventoryv1.GetReservationRequest{OrderId: "nope"})
		requireStatus(t, err, codes.InvalidArgument, "order_id: not a UUID")
	})

	t.Run("is refused to customers and to the services", func(t *testing.T) {
		_, err := b.user.GetReservation(b.asUser(ctx, newKey(), customer), &inventoryv1.GetReservationRequest{OrderId: orderID})
		requireStatus(t, err, codes.PermissionDenied, "")
		_, err = b.client.GetReservation(forCustomer(ctx), &inventoryv1.GetReservationRequest{OrderId: orderID})
		requireStatus(t, err, codes.PermissionDenied, "")
	})
}

func TestAdjustStock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("sets available with a fresh token and rejects the stale one", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		read, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-HEADSET"})
		require.NoError(t, err)
		token := read.GetProduct().GetVersionToken()

		resp, err := b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{
			Sku: "SKU-HEADSET", Available: 42, VersionToken: token, Reason: "cycle count",
		})
		require.NoError(t, err)
		require.EqualValues(t, 42, resp.GetProduct().GetAvailable())
		require.NotEqual(t, token, resp.GetProduct().GetVersionToken())

		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-HEADSET", Available: 7, VersionToken: token})
		requireStatus(t, err, codes.Aborted, "version_token: ")
		avail, _ := b.stock(t, "SKU-HEADSET")
		require.EqualValues(t, 42, avail)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE event_type = 'inventory.stock_adjusted.v1' AND aggregate_id = 'SKU-HEADSET'`))
	})

	t.Run("a reservation makes the token stale", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		read, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-HEADSET"})
		require.NoError(t, err)
		_, err = b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-HEADSET", 1)})
		require.NoError(t, err)
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{
			Sku: "SKU-HEADSET", Available: 1, VersionToken: read.GetProduct().GetVersionToken(),
		})
		requireStatus(t, err, codes.Aborted, "version_token: ")
	})

	t.Run("rejects forged and foreign tokens", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		mouse, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-MOUSE"})
		require.NoError(t, err)
		tok := mouse.GetProduct().GetVersionToken()
		forged := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
		for _, token := range []string{forged, tok} {
			_, err := b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-HEADSET", Available: 1, VersionToken: token})
			requireStatus(t, err, codes.Aborted, "version_token: ")
		}
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-HEADSET", Available: 1, VersionToken: "forged"})
		requireStatus(t, err, codes.InvalidArgument, "version_token: not a version token")
		require.Contains(t, b.logs.String(), `"msg":"version conflict"`, "refused tokens are logged for security monitoring")
		require.Contains(t, b.logs.String(), `"caller":"root"`)
		avail, _ := b.stock(t, "SKU-HEADSET")
		require.EqualValues(t, 800, avail)
	})

	t.Run("is refused to callers that are not admins", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		read, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-HEADSET"})
		require.NoError(t, err)
		req := &inventoryv1.AdjustStockRequest{Sku: "SKU-HEADSET", Available: 1, VersionToken: read.GetProduct().GetVersionToken()}
		for _, ctx := range []context.Context{
			b.asUser(ctx, newKey(), customer), b.asUser(ctx, newKey(), "admin"), b.asUser(ctx, newKey(), "ops", caller.RoleOperator),
		} {
			_, err := b.user.AdjustStock(ctx, req)
			requireStatus(t, err, codes.PermissionDenied, "allowed only for users with the admin role")
		}
		_, err = b.user.AdjustStock(metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, newKey(), "x-user-id", "admin"), req)
		requireStatus(t, err, codes.Unauthenticated, "credentials required")
		// Not even an unknown SKU is revealed to them, nor to a service.
		_, err = b.client.AdjustStock(withKey(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-NOPE", Available: 1, VersionToken: "x"})
		requireStatus(t, err, codes.PermissionDenied, "allowed only for users with the admin role")
		avail, _ := b.stock(t, "SKU-HEADSET")
		require.EqualValues(t, 800, avail)
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox`))

		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), req)
		require.NoError(t, err, "the admin may")
	})

	t.Run("rejects bad input and unknown SKUs", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		token := b.signer.Token("product", "SKU-NOPE", 1)
		_, err := b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-NOPE", Available: 1, VersionToken: token})
		requireStatus(t, err, codes.NotFound, `sku: "SKU-NOPE" not found`)
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-NOPE", Available: 1, VersionToken: "garbage"})
		requireStatus(t, err, codes.NotFound, `sku: "SKU-NOPE" not found`)
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-MOUSE", Available: 1, VersionToken: "garbage"})
		requireStatus(t, err, codes.InvalidArgument, "version_token: not a version token")
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-MOUSE", Available: -1, VersionToken: token})
		requireStatus(t, err, codes.InvalidArgument, "available: ")
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "SKU-MOUSE", Available: 1})
		requireStatus(t, err, codes.InvalidArgument, "version_token: required")
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "", Available: 1, VersionToken: token})
		requireStatus(t, err, codes.InvalidArgument, "sku: required")
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox`))
	})
}

func TestAdjustStockByDelta(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	delta := func(d int64) *int64 { return &d }
	events := func(t *testing.T, b testBundle, sku string) int {
		return b.count(t, `SELECT count(*) FROM outbox WHERE event_type = 'inventory.stock_adjusted.v1' AND aggregate_id = $1`, sku)
	}

	t.Run("adds and removes without a token, within 0..max", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sku := b.addProduct(t, "T-DELTA", 10)
		resp, err := b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(5), Reason: "received"})
		require.NoError(t, err)
		require.EqualValues(t, 15, resp.GetProduct().GetAvailable())
		resp, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(-15), Reason: "written off"})
		require.NoError(t, err)
		require.EqualValues(t, 0, resp.GetProduct().GetAvailable())

		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(-1)})
		requireStatus(t, err, codes.FailedPrecondition, "delta: would take available below 0")
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(0)})
		requireStatus(t, err, codes.InvalidArgument, "delta: must be nonzero")
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Available: 3, Delta: delta(1)})
		requireStatus(t, err, codes.InvalidArgument, "available: must be 0")
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: "T-NOPE", Delta: delta(1)})
		requireStatus(t, err, codes.NotFound, "sku")
		_, err = b.user.AdjustStock(b.asUser(ctx, newKey(), "u-1"), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(1)})
		requireStatus(t, err, codes.PermissionDenied, "")

		avail, _ := b.stock(t, sku)
		require.EqualValues(t, 0, avail)
		require.Equal(t, 2, events(t, b, sku), "one event per applied delta")
	})

	t.Run("with a token it is version-checked: a stale one conflicts", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sku := b.addProduct(t, "T-DELTA", 10)
		read, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: sku})
		require.NoError(t, err)
		token := read.GetProduct().GetVersionToken()
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(1), VersionToken: token})
		require.NoError(t, err)
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(1), VersionToken: token})
		requireStatus(t, err, codes.Aborted, "version_token: ")
		avail, _ := b.stock(t, sku)
		require.EqualValues(t, 11, avail, "the stale delta changed nothing")
	})

	t.Run("a request Redis forgot is not applied twice", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sku := b.addProduct(t, "T-DELTA", 10)
		key := newKey()
		_, err := b.user.AdjustStock(b.asAdmin(ctx, key), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(4)})
		require.NoError(t, err)
		deleteKeys(t, b.rdb, b.idemKeys) // a flushed or failed-over Redis
		resp, err := b.user.AdjustStock(b.asAdmin(ctx, key), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: delta(4)})
		require.NoError(t, err)
		require.EqualValues(t, 14, resp.GetProduct().GetAvailable())
		avail, _ := b.stock(t, sku)
		require.EqualValues(t, 14, avail, "the database's stock_deltas row refused the second run")
		require.Equal(t, 1, events(t, b, sku))
	})

	t.Run("loses no update on a hot SKU, and turns it pessimistic", func(t *testing.T) {
		t.Parallel()
		b := setup(t)
		sku := b.addProduct(t, "T-HOT", 1000)
		const clients, perClient = 16, 15
		var (
			wg              sync.WaitGroup
			applied, gaveUp atomic.Int64
			appliedDeltaSum atomic.Int64
		)
		for c := range clients {
			wg.Go(func() {
				for i := range perClient {
					d := int64(1 + (c+i)%3) // 1, 2 or 3 units
					if i%4 == 3 {
						d = -1
					}
					_, err := b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{Sku: sku, Delta: &d})
					switch {
					case err == nil:
						applied.Add(1)
						appliedDeltaSum.Add(d)
					case status.Code(err) == codes.Aborted && *contentionMode == "off":
						gaveUp.Add(1) // optimistic retries only: they may run out
					default:
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		want := 1000 + appliedDeltaSum.Load()
		if *contentionMode == "adaptive" {
			require.EqualValues(t, clients*perClient, applied.Load(), "nothing gives up")
		}
		var available, version int64
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT available, version FROM products WHERE sku = $1`, sku).Scan(&available, &version))
		require.Equal(t, want, available, "the sum of the deltas")
		require.Equal(t, 1+applied.Load(), version, "one version per applied update")
		require.EqualValues(t, applied.Load(), events(t, b, sku))
		t.Logf("applied %d, gave up %d", applied.Load(), gaveUp.Load())
		if *contentionMode == "adaptive" {
			require.Positive(t, servicetest.MetricSum(t, b.reg, "optlock_mode_switches_total"), "the SKU turned pessimistic")
		}
	})
}

func TestRedisDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Nobody listens on port 1: every idempotency store call fails.
	b := setup(t, setupOpts{redisAddr: "127.0.0.1:1"})

	t.Run("ReserveStock and ReleaseStock run, guarded by the database", func(t *testing.T) {
		req := &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-MOUSE", 1)}
		first, err := b.client.ReserveStock(withKey(ctx, newKey()), req)
		require.NoError(t, err)
		again, err := b.client.ReserveStock(withKey(ctx, newKey()), req)
		require.NoError(t, err)
		require.Equal(t, first.GetReservation().GetReservationId(), again.GetReservation().GetReservationId())
		avail, _ := b.stock(t, "SKU-MOUSE")
		require.EqualValues(t, 999, avail)

		_, err = b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: req.GetOrderId()})
		require.NoError(t, err)
		_, err = b.client.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: req.GetOrderId()})
		require.NoError(t, err)
		avail, _ = b.stock(t, "SKU-MOUSE")
		require.EqualValues(t, 1000, avail)
	})

	t.Run("AdjustStock answers Unavailable", func(t *testing.T) {
		read, err := b.client.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: "SKU-CABLE"})
		require.NoError(t, err)
		_, err = b.user.AdjustStock(b.asAdmin(ctx, newKey()), &inventoryv1.AdjustStockRequest{
			Sku: "SKU-CABLE", Available: 1, VersionToken: read.GetProduct().GetVersionToken(),
		})
		requireStatus(t, err, codes.Unavailable, "")
		avail, _ := b.stock(t, "SKU-CABLE")
		require.EqualValues(t, 10000, avail)
	})
}

func TestDatabaseLockTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{lockTimeout: 100 * time.Millisecond})
	orderID := newOrderID()
	_, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-MOUSE", 1)})
	require.NoError(t, err)

	// Another transaction holds the product row: the reservation's stock
	// update waits longer than lock_timeout (SQLSTATE 55P03).
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, `SELECT 1 FROM products WHERE sku = 'SKU-MOUSE' FOR UPDATE`)
	require.NoError(t, err)

	_, err = b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-MOUSE", 1)})
	requireStatus(t, err, codes.Unavailable, "temporarily unavailable; retry")
	key := newKey()
	_, err = b.client.ReleaseStock(withKey(ctx, key), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
	requireStatus(t, err, codes.Unavailable, "temporarily unavailable; retry")
	require.Contains(t, b.logs.String(), "55P03", "the detail is logged")

	// Once the lock is gone, a retry with the same key succeeds.
	require.NoError(t, tx.Rollback(ctx))
	resp, err := b.client.ReleaseStock(withKey(ctx, key), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
	require.NoError(t, err)
	require.Equal(t, inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED, resp.GetReservation().GetStatus())
	avail, reserved := b.stock(t, "SKU-MOUSE")
	require.Equal(t, []int64{1000, 0}, []int64{avail, reserved})
}

func TestInternalErrorsDoNotLeak(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.pool.Close() // every query now fails inside the repository

	_, err := b.client.GetStock(context.Background(), &inventoryv1.GetStockRequest{Sku: "SKU-MOUSE"})
	requireStatus(t, err, codes.Internal, "internal error")
	require.Equal(t, "internal error", status.Convert(err).Message())
	_, err = b.client.ReserveStock(withKey(context.Background(), newKey()), &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-MOUSE", 1)})
	require.Equal(t, "internal error", status.Convert(err).Message())
	require.Contains(t, b.logs.String(), "closed pool", "the detail is logged")
}

// The attacks that worked before callers were verified: releasing the stock
// of a confirmed order, reserving for a stranger's order. Refused, and
// nothing changes.
func TestSagaStepsAreForTheOrchestratorOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t)
	orderID := newOrderID()
	_, err := b.client.ReserveStock(withKey(ctx, newKey()), &inventoryv1.ReserveStockRequest{OrderId: orderID, Items: items("SKU-MOUSE", 1)})
	require.NoError(t, err)
	avail, reserved := b.stock(t, "SKU-MOUSE")

	for _, ctx := range []context.Context{b.asUser(ctx, newKey(), customer), b.asAdmin(ctx, newKey())} {
		_, err := b.user.ReleaseStock(ctx, &inventoryv1.ReleaseStockRequest{OrderId: orderID})
		requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
		_, err = b.user.ReserveStock(ctx, &inventoryv1.ReserveStockRequest{OrderId: newOrderID(), Items: items("SKU-MOUSE", 1)})
		requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
	}
	payment := inventoryv1.NewInventoryServiceClient(b.pki.DialAs("payment", "inventory", b.addr))
	_, err = payment.ReleaseStock(withKey(ctx, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
	requireStatus(t, err, codes.PermissionDenied, "allowed only for the orchestrator service acting for a user")
	_, err = b.client.ReleaseStock(metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, newKey()), &inventoryv1.ReleaseStockRequest{OrderId: orderID})
	requireStatus(t, err, codes.PermissionDenied, "the orchestrator service must act for a user")

	a, r := b.stock(t, "SKU-MOUSE")
	require.Equal(t, []int64{avail, reserved}, []int64{a, r}, "no stock moved")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM reservations WHERE status = 'RESERVED'`))
}

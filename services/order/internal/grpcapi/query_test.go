package grpcapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/pgtest"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/grpcapi"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// seedViews writes n orders of customer into the view, as the projector
// would have.
func seedViews(t *testing.T, n int, customer string) (*grpcapi.QueryServer, []uuid.UUID) {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.OrderRead)
	var ids []uuid.UUID
	for i := range n {
		id := uuid.New()
		ids = append(ids, id)
		_, err := pool.Exec(context.Background(), `INSERT INTO order_views (order_id, customer_id, status, items, currency_code,
 total_minor, order_version, created_at, updated_at) VALUES ($1, $2, $3, '[]', 'EUR', 100, 1, $4, $4)`,
			id, customer, []string{"PENDING", "CONFIRMED"}[i%2], time.Date(2026, 12, 1, 0, 0, i, 0, time.UTC))
		require.NoError(t, err)
	}
	return grpcapi.NewQueryServer(projection.NewReader(pool, 200*time.Millisecond), nil), ids
}

func as(user string, roles ...string) context.Context {
	return caller.With(context.Background(), caller.Identity{User: user, Roles: roles})
}

func TestListOrders(t *testing.T) {
	t.Parallel()
	srv, ids := seedViews(t, 7, "alice")

	t.Run("pages newest first with an opaque token", func(t *testing.T) {
		var got []string
		req := &orderv1.ListOrdersRequest{CustomerId: "alice", PageSize: 3}
		for {
			resp, err := srv.ListOrders(as("alice"), req)
			require.NoError(t, err)
			for _, o := range resp.GetOrders() {
				got = append(got, o.GetOrderId())
			}
			if resp.GetNextPageToken() == "" {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		want := make([]string, len(ids))
		for i, id := range ids {
			want[len(ids)-1-i] = id.String()
		}
		require.Equal(t, want, got)
	})
	t.Run("a status filter and an operator listing someone else's", func(t *testing.T) {
		resp, err := srv.ListOrders(as("olga", caller.RoleOperator), &orderv1.ListOrdersRequest{
			CustomerId: "alice", Status: orderv1.OrderStatus_ORDER_STATUS_CONFIRMED})
		require.NoError(t, err)
		require.Len(t, resp.GetOrders(), 3)
		for _, o := range resp.GetOrders() {
			require.Equal(t, orderv1.OrderStatus_ORDER_STATUS_CONFIRMED, o.GetStatus())
		}
	})
	t.Run("an unknown customer has an empty page", func(t *testing.T) {
		resp, err := srv.ListOrders(as("zed"), &orderv1.ListOrdersRequest{CustomerId: "zed"})
		require.NoError(t, err)
		require.Empty(t, resp.GetOrders())
		require.Empty(t, resp.GetNextPageToken())
	})
	first, err := srv.ListOrders(as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", PageSize: 1})
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		ctx   context.Context
		req   *orderv1.ListOrdersRequest
		code  codes.Code
		field string
	}{
		{"no customer", as("alice"), &orderv1.ListOrdersRequest{}, codes.InvalidArgument, "customer_id"},
		{"page size too large", as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", PageSize: 101}, codes.InvalidArgument, "page_size"},
		{"negative page size", as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", PageSize: -1}, codes.InvalidArgument, "page_size"},
		{"unknown status", as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", Status: 42}, codes.InvalidArgument, "status"},
		{"garbage token", as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", PageToken: "%%%"}, codes.InvalidArgument, "page_token"},
		{"truncated token", as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", PageToken: first.GetNextPageToken()[:10]}, codes.InvalidArgument, "page_token"},
		{"token of another query", as("alice"), &orderv1.ListOrdersRequest{CustomerId: "alice", Status: orderv1.OrderStatus_ORDER_STATUS_PENDING, PageToken: first.GetNextPageToken()}, codes.InvalidArgument, "page_token"},
		{"someone else's orders", as("bob"), &orderv1.ListOrdersRequest{CustomerId: "alice"}, codes.PermissionDenied, "customer_id"},
		{"a service acting for alice is not alice's own token", caller.With(context.Background(), caller.Identity{Service: "orchestrator", User: "alice", Delegated: true}),
			&orderv1.ListOrdersRequest{CustomerId: "alice"}, codes.PermissionDenied, "customer_id"},
	} {
		t.Run(fmt.Sprintf("refused: %s", tc.name), func(t *testing.T) {
			_, err := srv.ListOrders(tc.ctx, tc.req)
			require.Equal(t, tc.code, status.Code(err), err)
			require.Contains(t, status.Convert(err).Message(), tc.field)
		})
	}
}

func TestGetOrderView(t *testing.T) {
	t.Parallel()
	srv, ids := seedViews(t, 1, "alice")
	resp, err := srv.GetOrderView(as("alice"), &orderv1.GetOrderViewRequest{OrderId: ids[0].String()})
	require.NoError(t, err)
	require.Equal(t, "alice", resp.GetOrder().GetCustomerId())
	require.Equal(t, int64(1), resp.GetOrder().GetOrderVersion())
	_, err = srv.GetOrderView(as("olga", caller.RoleOperator), &orderv1.GetOrderViewRequest{OrderId: ids[0].String()})
	require.NoError(t, err)

	_, err = srv.GetOrderView(as("bob"), &orderv1.GetOrderViewRequest{OrderId: ids[0].String()})
	require.Equal(t, codes.NotFound, status.Code(err), "another customer's order does not exist for them")
	_, err = srv.GetOrderView(as("alice"), &orderv1.GetOrderViewRequest{OrderId: "nope"})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "order_id")
	_, err = srv.GetOrderView(as("alice"), &orderv1.GetOrderViewRequest{OrderId: ids[0].String(), MinOrderVersion: -1})
	require.Equal(t, codes.InvalidArgument, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "min_order_version")
	_, err = srv.GetOrderView(as("alice"), &orderv1.GetOrderViewRequest{OrderId: ids[0].String(), MinOrderVersion: 3})
	require.Equal(t, codes.Unavailable, status.Code(err))
	require.Contains(t, status.Convert(err).Message(), "it has order version 1, min_order_version is 3 (2 behind)")
}

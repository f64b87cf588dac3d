package grpcapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/logs"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/order"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// Views is the read model the query RPCs read (projection.Reader).
type Views interface {
	// Get returns one order's view, waiting for minVersion when > 0;
	// projection.ErrNotFound or *projection.BehindError when it cannot.
	Get(ctx context.Context, id uuid.UUID, minVersion int64) (projection.View, error)
	// List returns a page of a customer's orders and the next page's cursor.
	List(ctx context.Context, q projection.ListQuery) ([]projection.View, *projection.Cursor, error)
}

var _ Views = (*projection.Reader)(nil)

// QueryServer implements orderv1.OrderQueryServiceServer over the read
// model only. It is safe for concurrent use.
type QueryServer struct {
	orderv1.UnimplementedOrderQueryServiceServer

	views  Views
	logger *slog.Logger
}

var _ orderv1.OrderQueryServiceServer = (*QueryServer)(nil)

// NewQueryServer returns a QueryServer reading views and logging internal
// errors to logger (nil discards them).
func NewQueryServer(views Views, logger *slog.Logger) *QueryServer {
	return &QueryServer{views: views, logger: logs.OrDiscard(logger)}
}

// maxCustomerID bounds customer_id in queries: longer is no customer's.
const maxCustomerID = 128

// GetOrderView implements orderv1.OrderQueryServiceServer. Like GetOrder,
// only the customer who placed the order and operators see it; anyone else
// gets NOT_FOUND, as for an unknown order.
func (s *QueryServer) GetOrderView(ctx context.Context, req *orderv1.GetOrderViewRequest) (*orderv1.GetOrderViewResponse, error) {
	raw := order.NormalizeID(req.GetOrderId())
	if err := order.ValidateID("order_id", raw); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if req.GetMinOrderVersion() < 0 {
		return nil, status.Error(codes.InvalidArgument, "min_order_version: must not be negative")
	}
	v, err := s.views.Get(ctx, uuid.MustParse(raw), req.GetMinOrderVersion())
	if err != nil {
		return nil, s.toStatus(ctx, "GetOrderView", err)
	}
	id := caller.From(ctx)
	if v.CustomerID != id.EndUser() && !id.IsOperator() {
		return nil, s.toStatus(ctx, "GetOrderView", projection.ErrNotFound)
	}
	return &orderv1.GetOrderViewResponse{Order: viewToProto(v)}, nil
}

// ListOrders implements orderv1.OrderQueryServiceServer. A customer lists
// only their own orders (PERMISSION_DENIED for anyone else's); operators
// list anyone's. An unknown customer has an empty page.
func (s *QueryServer) ListOrders(ctx context.Context, req *orderv1.ListOrdersRequest) (*orderv1.ListOrdersResponse, error) {
	customer := req.GetCustomerId()
	switch {
	case strings.TrimSpace(customer) == "":
		return nil, status.Error(codes.InvalidArgument, "customer_id: required")
	case len(customer) > maxCustomerID:
		return nil, status.Errorf(codes.InvalidArgument, "customer_id: at most %d bytes", maxCustomerID)
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = projection.DefaultPageSize
	case size < 0 || size > projection.MaxPageSize:
		return nil, status.Errorf(codes.InvalidArgument, "page_size: must be between 0 and %d", projection.MaxPageSize)
	}
	st, ok := viewStatus[req.GetStatus()]
	if !ok {
		return nil, status.Error(codes.InvalidArgument, "status: unknown order status")
	}
	id := caller.From(ctx)
	if customer != id.EndUser() && !id.IsOperator() {
		return nil, status.Error(codes.PermissionDenied, "customer_id: you may list only your own orders")
	}
	after, err := decodeViewPageToken(req.GetPageToken(), customer, st)
	if err != nil {
		return nil, err
	}
	views, next, err := s.views.List(ctx, projection.ListQuery{CustomerID: customer, Status: st, PageSize: size, After: after})
	if err != nil {
		return nil, s.toStatus(ctx, "ListOrders", err)
	}
	resp := &orderv1.ListOrdersResponse{Orders: make([]*orderv1.OrderView, len(views))}
	for i, v := range views {
		resp.Orders[i] = viewToProto(v)
	}
	if next != nil {
		resp.NextPageToken = encodeViewPageToken(*next, customer, st)
	}
	return resp, nil
}

var viewStatus = map[orderv1.OrderStatus]string{
	orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED: "",
	orderv1.OrderStatus_ORDER_STATUS_PENDING:     projection.StatusPending,
	orderv1.OrderStatus_ORDER_STATUS_CONFIRMED:   projection.StatusConfirmed,
	orderv1.OrderStatus_ORDER_STATUS_CANCELLED:   projection.StatusCancelled,
}

// A page token is opaque to clients: base64url of a format byte, the last
// order's created_at (Unix nanoseconds) and id, and a hash of the query it
// continues, so that a token is refused with another customer or status
// rather than silently listing from a wrong place. It grants nothing: the
// caller's right to the customer is checked on every page.
const pageTokenFormat = 1

func encodeViewPageToken(c projection.Cursor, customer, st string) string {
	b := make([]byte, 0, 33)
	b = append(b, pageTokenFormat)
	b = binary.BigEndian.AppendUint64(b, uint64(c.CreatedAt.UnixNano())) //nolint:gosec // a time's bits, decoded alike
	b = append(b, c.OrderID[:]...)
	b = binary.BigEndian.AppendUint64(b, queryHash(customer, st))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeViewPageToken(tok, customer, st string) (*projection.Cursor, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 33 || b[0] != pageTokenFormat {
		return nil, status.Error(codes.InvalidArgument, "page_token: not a page token; use a next_page_token of ListOrders")
	}
	if binary.BigEndian.Uint64(b[25:]) != queryHash(customer, st) {
		return nil, status.Error(codes.InvalidArgument, "page_token: belongs to another customer_id or status")
	}
	c := projection.Cursor{CreatedAt: time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))).UTC()} //nolint:gosec // see encodeViewPageToken
	copy(c.OrderID[:], b[9:25])
	return &c, nil
}

func queryHash(customer, st string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(customer))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(st))
	return h.Sum64()
}

// toStatus is the one place where the query RPCs' errors become gRPC
// statuses; internal text never reaches the client.
func (s *QueryServer) toStatus(ctx context.Context, rpc string, err error) error {
	var behind *projection.BehindError
	switch {
	case errors.Is(err, projection.ErrNotFound):
		return status.Error(codes.NotFound, "order not found")
	case errors.As(err, &behind):
		return status.Errorf(codes.Unavailable,
			"the read model has not caught up: it has order version %d, min_order_version is %d (%d behind); retry",
			behind.Have, behind.Want, behind.Want-behind.Have)
	default:
		return grpcerr.Fallback(ctx, s.logger, "order query", err, "rpc", rpc)
	}
}

func viewToProto(v projection.View) *orderv1.OrderView {
	items := make([]*commonv1.LineItem, len(v.Items))
	for i, it := range v.Items {
		items[i] = &commonv1.LineItem{Sku: it.SKU, Name: it.Name, Quantity: it.Quantity,
			UnitPrice: commonv1.NewMoney(v.CurrencyCode, it.UnitPriceMinor)}
	}
	st := orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
	for k, s := range viewStatus {
		if s == v.Status && s != "" {
			st = k
		}
	}
	return &orderv1.OrderView{
		OrderId: v.OrderID.String(), CustomerId: v.CustomerID, Status: st, Items: items,
		Total:         commonv1.NewMoney(v.CurrencyCode, v.TotalMinor),
		PaymentStatus: v.PaymentStatus, InventoryStatus: v.InventoryStatus, CancelReason: v.CancelReason,
		CreateTime: timestamppb.New(v.CreatedAt), UpdateTime: timestamppb.New(v.UpdatedAt),
		OrderVersion: v.OrderVersion, PaymentVersion: v.PaymentVersion, InventoryVersion: v.InventoryVersion,
		PaymentReason: v.PaymentReason, InventoryReason: v.InventoryReason, SagaOutcome: v.SagaOutcome(),
	}
}

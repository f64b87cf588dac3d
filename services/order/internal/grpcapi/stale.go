package grpcapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/app"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// ListStalePendingOrders implements orderv1.OrderServiceServer: the
// orchestrator's reconciler (the policy admits nobody else) pages through
// the orders still PENDING long after they were placed.
func (s *Server) ListStalePendingOrders(ctx context.Context, req *orderv1.ListStalePendingOrdersRequest) (*orderv1.ListStalePendingOrdersResponse, error) {
	if req.GetOlderThan() == nil {
		return nil, status.Error(codes.InvalidArgument, "older_than: required")
	}
	if err := req.GetOlderThan().CheckValid(); err != nil {
		return nil, status.Error(codes.InvalidArgument, "older_than: not a valid duration")
	}
	var after *app.PageCursor
	if tok := req.GetPageToken(); tok != "" {
		c, err := decodePageToken(tok)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token: not a page token; use the one the previous response returned")
		}
		after = &c
	}
	orders, next, err := s.app.ListStalePendingOrders(ctx, req.GetOlderThan().AsDuration(), int(req.GetPageSize()), after)
	if err != nil {
		return nil, s.toStatus(ctx, "ListStalePendingOrders", err)
	}
	resp := &orderv1.ListStalePendingOrdersResponse{Orders: make([]*orderv1.PendingOrder, len(orders))}
	for i, o := range orders {
		resp.Orders[i] = pendingToProto(o)
	}
	if next != nil {
		resp.NextPageToken = encodePageToken(*next)
	}
	return resp, nil
}

func pendingToProto(o order.Order) *orderv1.PendingOrder {
	items := make([]*commonv1.LineItem, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = &commonv1.LineItem{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: commonv1.NewMoney(l.UnitPrice.Currency, l.UnitPrice.Minor), Name: l.Name}
	}
	return &orderv1.PendingOrder{
		OrderId:       o.ID,
		CustomerId:    o.CustomerID,
		Items:         items,
		Total:         commonv1.NewMoney(o.Total.Currency, o.Total.Minor),
		PaymentMethod: o.PaymentMethod,
		PlacedBy:      o.PlacedBy,
		CreateTime:    timestamppb.New(o.CreatedAt),
	}
}

// Page tokens: base64url of version(1) | created_at unix micros(8) | id(16).
// Microseconds are PostgreSQL's resolution, so the cursor is exact.
const pageTokenVersion = 1

func encodePageToken(c app.PageCursor) string {
	b := make([]byte, 0, 25)
	b = append(b, pageTokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.CreatedAt.UnixMicro()))
	b = append(b, c.ID[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(tok string) (app.PageCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 25 || b[0] != pageTokenVersion {
		return app.PageCursor{}, errors.New("bad page token")
	}
	id, err := uuid.FromBytes(b[9:])
	if err != nil {
		return app.PageCursor{}, err
	}
	return app.PageCursor{CreatedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))).UTC(), ID: id}, nil
}

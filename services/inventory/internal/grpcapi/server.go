// Package grpcapi serves goodgo.inventory.v1.InventoryService: it converts
// protobuf requests to use-case calls and domain results back to protobuf,
// and maps errors to gRPC status codes in one place (toStatus), never
// sending internal error text to clients.
package grpcapi

import (
	"context"
	"log/slog"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/optlock"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	"github.com/goodgo/goodgo/services/inventory/internal/app"
	"github.com/goodgo/goodgo/services/inventory/internal/inventory"
)

// TokenIssuer issues the opaque version token of an aggregate version
// (optlock.Signer).
type TokenIssuer interface {
	Token(aggregateType, id string, version int64) string
}

var _ TokenIssuer = (*optlock.Signer)(nil)

// Server implements inventoryv1.InventoryServiceServer. It is safe for
// concurrent use.
type Server struct {
	inventoryv1.UnimplementedInventoryServiceServer

	app    *app.Service
	tokens TokenIssuer
	logger *slog.Logger
}

var _ inventoryv1.InventoryServiceServer = (*Server)(nil)

// New returns a Server running the use cases of svc. tokens signs the
// version tokens of returned products. A nil logger discards logs.
func New(svc *app.Service, tokens TokenIssuer, logger *slog.Logger) *Server {
	return &Server{app: svc, tokens: tokens, logger: logs.OrDiscard(logger)}
}

// GetProducts lists catalog entries by SKU or page by page.
func (s *Server) GetProducts(ctx context.Context, req *inventoryv1.GetProductsRequest) (*inventoryv1.GetProductsResponse, error) {
	products, next, err := s.app.GetProducts(ctx, req.GetSkus(), req.GetPageSize(), req.GetPageToken())
	if err != nil {
		return nil, s.toStatus(ctx, "GetProducts", err)
	}
	resp := &inventoryv1.GetProductsResponse{Products: make([]*inventoryv1.Product, len(products)), NextPageToken: next}
	for i, p := range products {
		resp.Products[i] = s.product(p)
	}
	return resp, nil
}

// GetStock reads one SKU with its version token.
func (s *Server) GetStock(ctx context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	p, err := s.app.GetStock(ctx, req.GetSku())
	if err != nil {
		return nil, s.toStatus(ctx, "GetStock", err)
	}
	return &inventoryv1.GetStockResponse{Product: s.product(p)}, nil
}

// ReserveStock reserves every item of an order or none of them.
func (s *Server) ReserveStock(ctx context.Context, req *inventoryv1.ReserveStockRequest) (*inventoryv1.ReserveStockResponse, error) {
	items := make([]inventory.Item, len(req.GetItems()))
	for i, it := range req.GetItems() {
		items[i] = inventory.Item{SKU: it.GetSku(), Quantity: it.GetQuantity()}
	}
	res, err := s.app.ReserveStock(ctx, req.GetOrderId(), items)
	if err != nil {
		return nil, s.toStatus(ctx, "ReserveStock", err)
	}
	return &inventoryv1.ReserveStockResponse{Reservation: reservation(res)}, nil
}

// ReleaseStock returns what an order reserved, at most once. An order
// without a reservation gets a RELEASED one without items (a tombstone), so
// that a ReserveStock still in flight cannot take stock afterwards.
func (s *Server) ReleaseStock(ctx context.Context, req *inventoryv1.ReleaseStockRequest) (*inventoryv1.ReleaseStockResponse, error) {
	res, err := s.app.ReleaseStock(ctx, req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, "ReleaseStock", err)
	}
	return &inventoryv1.ReleaseStockResponse{Reservation: reservation(res)}, nil
}

// GetReservation reads an order's reservation (operators only, by policy).
func (s *Server) GetReservation(ctx context.Context, req *inventoryv1.GetReservationRequest) (*inventoryv1.GetReservationResponse, error) {
	res, err := s.app.GetReservation(ctx, req.GetOrderId())
	if err != nil {
		return nil, s.toStatus(ctx, "GetReservation", err)
	}
	return &inventoryv1.GetReservationResponse{Reservation: reservation(res)}, nil
}

// AdjustStock sets a SKU's available units under its version token; only
// admins may. A refused token is logged for security monitoring.
// With a delta it changes the available units by that much instead.
func (s *Server) AdjustStock(ctx context.Context, req *inventoryv1.AdjustStockRequest) (*inventoryv1.AdjustStockResponse, error) {
	var (
		p   inventory.Product
		err error
	)
	switch {
	case req.Delta == nil:
		p, err = s.app.AdjustStock(ctx, caller.From(ctx), req.GetSku(), req.GetAvailable(), req.GetVersionToken(), req.GetReason())
	case req.GetAvailable() != 0:
		err = &inventory.FieldError{Field: "available", Problem: "must be 0 (unset) when delta is set"}
	default:
		p, err = s.app.AddStock(ctx, caller.From(ctx), req.GetSku(), req.GetDelta(), req.GetVersionToken(), req.GetReason())
	}
	if err != nil {
		optlock.LogRefusal(ctx, s.logger, event.AggregateProduct, req.GetSku(), err)
		return nil, s.toStatus(ctx, "AdjustStock", err)
	}
	return &inventoryv1.AdjustStockResponse{Product: s.product(p)}, nil
}

func (s *Server) product(p inventory.Product) *inventoryv1.Product {
	return &inventoryv1.Product{
		Sku:          p.SKU,
		Name:         p.Name,
		UnitPrice:    commonv1.NewMoney(p.UnitPrice.Currency, p.UnitPrice.Minor),
		Available:    p.Available,
		Reserved:     p.Reserved,
		VersionToken: s.tokens.Token(event.AggregateProduct, p.SKU, p.Version),
		UpdateTime:   timestamppb.New(p.UpdatedAt),
	}
}

func reservation(r inventory.Reservation) *inventoryv1.Reservation {
	items := make([]*inventoryv1.ReservationItem, len(r.Items))
	for i, it := range r.Items {
		items[i] = &inventoryv1.ReservationItem{Sku: it.SKU, Quantity: it.Quantity}
	}
	return &inventoryv1.Reservation{
		ReservationId: r.ID,
		OrderId:       r.OrderID,
		Status:        reservationStatus(r.Status),
		Items:         items,
		RejectReason:  r.RejectReason,
		CreateTime:    timestamppb.New(r.CreatedAt),
		UpdateTime:    timestamppb.New(r.UpdatedAt),
	}
}

func reservationStatus(s inventory.Status) inventoryv1.ReservationStatus {
	switch s {
	case inventory.StatusReserved:
		return inventoryv1.ReservationStatus_RESERVATION_STATUS_RESERVED
	case inventory.StatusRejected:
		return inventoryv1.ReservationStatus_RESERVATION_STATUS_REJECTED
	case inventory.StatusReleased:
		return inventoryv1.ReservationStatus_RESERVATION_STATUS_RELEASED
	}
	return inventoryv1.ReservationStatus_RESERVATION_STATUS_UNSPECIFIED
}

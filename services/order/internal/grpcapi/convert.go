package grpcapi

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/event"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/order"
)

// orderToProto converts an order for a response, with a version token
// signed for its current version.
func (s *Server) orderToProto(o order.Order) *orderv1.Order {
	items := make([]*commonv1.LineItem, len(o.Lines))
	for i, l := range o.Lines {
		items[i] = &commonv1.LineItem{Sku: l.SKU, Quantity: l.Quantity, UnitPrice: commonv1.NewMoney(l.UnitPrice.Currency, l.UnitPrice.Minor), Name: l.Name}
	}
	return &orderv1.Order{
		OrderId:         o.ID,
		CustomerId:      o.CustomerID,
		Status:          statusToProto(o.Status),
		Items:           items,
		Total:           commonv1.NewMoney(o.Total.Currency, o.Total.Minor),
		ShippingAddress: addressToProto(o.ShippingAddress),
		VersionToken:    s.tokens.Token(event.AggregateOrder, o.ID, o.Version),
		CancelReason:    o.CancelReason,
		CreateTime:      timestamppb.New(o.CreatedAt),
		UpdateTime:      timestamppb.New(o.UpdatedAt),
		Version:         o.Version,
	}
}

func statusToProto(s order.Status) orderv1.OrderStatus {
	switch s {
	case order.StatusPending:
		return orderv1.OrderStatus_ORDER_STATUS_PENDING
	case order.StatusConfirmed:
		return orderv1.OrderStatus_ORDER_STATUS_CONFIRMED
	case order.StatusCancelled:
		return orderv1.OrderStatus_ORDER_STATUS_CANCELLED
	default:
		return orderv1.OrderStatus_ORDER_STATUS_UNSPECIFIED
	}
}

func addressToProto(a order.Address) *orderv1.Address {
	return &orderv1.Address{
		Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City, PostalCode: a.PostalCode, CountryCode: a.CountryCode,
	}
}

// addressFromProto converts a request's address; a missing one becomes the
// zero Address, which validation reports as "shipping_address: required".
func addressFromProto(a *orderv1.Address) order.Address {
	return order.Address{
		Name:        a.GetName(),
		Line1:       a.GetLine1(),
		Line2:       a.GetLine2(),
		City:        a.GetCity(),
		PostalCode:  a.GetPostalCode(),
		CountryCode: a.GetCountryCode(),
	}
}

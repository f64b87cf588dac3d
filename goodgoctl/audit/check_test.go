package audit_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/goodgoctl/audit"
)

var now = time.Date(2026, 12, 2, 8, 0, 0, 0, time.UTC)

// settled is a quiescent snapshot that holds every invariant: a CONFIRMED
// order (a), one CANCELLED because its stock ran short (b: refunded,
// rejected), one whose card was declined (c) and one whose payment was
// voided by a compensation that overtook it (d: tombstone reservation).
func settled() *audit.Snapshot {
	saga := func(id, order, state string) []*audit.Saga {
		return []*audit.Saga{{ID: id, OrderID: order, State: state, Deadline: now.Add(-time.Minute)}}
	}
	return &audit.Snapshot{
		TakenAt: now,
		Sagas: map[string][]*audit.Saga{
			"a": saga("sa", "a", audit.SagaCompleted), "b": saga("sb", "b", audit.SagaCompensated),
			"c": saga("sc", "c", audit.SagaCompensated), "d": saga("sd", "d", audit.SagaCompensated),
		},
		Orders: map[string]*audit.Order{
			"a": {ID: "a", Status: audit.OrderConfirmed, Currency: "USD", Total: 500, Lines: map[string]int64{"K": 2, "M": 1}},
			"b": {ID: "b", Status: audit.OrderCancelled, Currency: "USD", Total: 900, Lines: map[string]int64{"L": 9}},
			"c": {ID: "c", Status: audit.OrderCancelled, Currency: "USD", Total: 100, Lines: map[string]int64{"M": 1}},
			"d": {ID: "d", Status: audit.OrderCancelled, Currency: "USD", Total: 100, Lines: map[string]int64{"M": 1}},
		},
		Payments: map[string]*audit.Payment{
			"a": {ID: "pa", OrderID: "a", Status: audit.PaymentCaptured, Currency: "USD", Amount: 500},
			"b": {ID: "pb", OrderID: "b", Status: audit.PaymentRefunded, Currency: "USD", Amount: 900, Refunded: 900},
			"c": {ID: "pc", OrderID: "c", Status: audit.PaymentDeclined, Currency: "USD", Amount: 100, DeclineReason: "card_declined"},
			"d": {ID: "pd", OrderID: "d", Status: audit.PaymentVoided},
		},
		Reservations: map[string]*audit.Reservation{
			"a": {ID: "ra", OrderID: "a", Status: audit.ReservationReserved, Lines: map[string]int64{"K": 2, "M": 1}},
			"b": {ID: "rb", OrderID: "b", Status: audit.ReservationRejected, Lines: map[string]int64{"L": 9}},
			"d": {ID: "rd", OrderID: "d", Status: audit.ReservationReleased, Lines: map[string]int64{}},
		},
		Products: map[string]*audit.Product{
			"K": {SKU: "K", Available: 8, Reserved: 2}, "M": {SKU: "M", Available: 99, Reserved: 1},
			"L": {SKU: "L", Available: 5}, "X": {SKU: "X", Available: 0},
		},
		// The read model agrees with the write side (d's VOIDED payment
		// has no event, hence no view state).
		Views: map[string]*audit.View{
			"a": {OrderID: "a", Status: audit.OrderConfirmed, Currency: "USD", Total: 500, PaymentStatus: "CAPTURED", InventoryStatus: "RESERVED"},
			"b": {OrderID: "b", Status: audit.OrderCancelled, Currency: "USD", Total: 900, PaymentStatus: "REFUNDED", InventoryStatus: "REJECTED"},
			"c": {OrderID: "c", Status: audit.OrderCancelled, Currency: "USD", Total: 100, PaymentStatus: "DECLINED"},
			"d": {OrderID: "d", Status: audit.OrderCancelled, Currency: "USD", Total: 100, InventoryStatus: "RELEASED"},
		},
		Quiescent: true,
	}
}

func TestCheckPassesAConsistentSnapshot(t *testing.T) {
	r := audit.Check(settled(), time.Minute)
	require.Empty(t, r.Violations)
	require.Equal(t, 4, r.Audited)
	require.Zero(t, r.InFlight)
}

func TestCheckReportsEachViolation(t *testing.T) {
	for _, c := range []struct {
		name    string
		corrupt func(s *audit.Snapshot)
		want    []string // "kind [ids]" of every violation, in order
	}{
		{"an order left PENDING after its saga completed", func(s *audit.Snapshot) {
			s.Orders["a"].Status = audit.OrderPending
		}, []string{"order_not_terminal [order=a saga=sa]", "stock_unbalanced [sku=K]", "stock_unbalanced [sku=M]"}},
		{"a saga running past its deadline and its order still PENDING", func(s *audit.Snapshot) {
			s.Sagas["a"][0].State = audit.SagaRunning
			s.Sagas["a"][0].Deadline = now.Add(-2 * time.Minute)
			s.Orders["a"].Status = audit.OrderPending
			s.Products["K"].Reserved, s.Products["M"].Reserved = 0, 0
			delete(s.Payments, "a")
			delete(s.Reservations, "a")
		}, []string{"order_not_terminal [order=a saga=sa]", "saga_overdue [order=a saga=sa]"}},
		{"a saga parked", func(s *audit.Snapshot) {
			s.Sagas["b"][0].State = audit.SagaParked
			s.Orders["b"].Status = audit.OrderPending
		}, []string{"order_not_terminal [order=b saga=sb]", "saga_parked [order=b saga=sb]"}},
		{"a COMPLETED saga whose order was cancelled", func(s *audit.Snapshot) {
			s.Sagas["d"][0].State = audit.SagaCompleted
		}, []string{"saga_mismatch [order=d saga=sd]"}},
		{"two sagas for one order", func(s *audit.Snapshot) {
			s.Sagas["c"] = append(s.Sagas["c"], &audit.Saga{ID: "sc2", OrderID: "c", State: audit.SagaCompensated})
		}, []string{"saga_mismatch [order=c saga=sc saga=sc2]"}},
		{"a saga for an unknown order", func(s *audit.Snapshot) {
			s.Sagas["z"] = []*audit.Saga{{ID: "sz", OrderID: "z", State: audit.SagaCompensated}}
		}, []string{"saga_mismatch [order=z saga=sz]"}},
		{"the read model without a settled order, or behind it", func(s *audit.Snapshot) {
			s.Views["a"] = &audit.View{OrderID: "a", Missing: "the read model has not caught up"}
		}, []string{"read_model_mismatch [order=a]"}},
		{"the read model's view differs from the write side", func(s *audit.Snapshot) {
			s.Views["b"].Status = audit.OrderPending
			s.Views["c"].PaymentStatus = "CAPTURED"
		}, []string{"read_model_mismatch [order=b]", "read_model_mismatch [order=c]"}},
		{"a CONFIRMED order's payment refunded", func(s *audit.Snapshot) {
			p := s.Payments["a"]
			p.Status, p.Refunded = audit.PaymentRefunded, p.Amount
		}, []string{"confirmed_not_charged [order=a payment=pa]", "money_unbalanced [currency=USD]", "read_model_mismatch [order=a]"}},
		{"a CONFIRMED order without a payment", func(s *audit.Snapshot) {
			delete(s.Payments, "a")
		}, []string{"confirmed_not_charged [order=a]", "money_unbalanced [currency=USD]"}},
		{"a CONFIRMED order's reservation released", func(s *audit.Snapshot) {
			s.Reservations["a"].Status = audit.ReservationReleased
			s.Products["K"].Reserved, s.Products["M"].Reserved = 0, 0
		}, []string{"confirmed_not_reserved [order=a reservation=ra]", "read_model_mismatch [order=a]", "stock_unbalanced [sku=K]", "stock_unbalanced [sku=M]"}},
		{"a CONFIRMED order's reservation of other lines", func(s *audit.Snapshot) {
			s.Reservations["a"].Lines["K"] = 1
		}, []string{"confirmed_not_reserved [order=a reservation=ra]"}},
		{"a CANCELLED order's payment left captured", func(s *audit.Snapshot) {
			p := s.Payments["b"]
			p.Status, p.Refunded = audit.PaymentCaptured, 0
		}, []string{"cancelled_charged [order=b payment=pb]", "money_unbalanced [currency=USD]", "read_model_mismatch [order=b]"}},
		{"a CANCELLED order refunded in part", func(s *audit.Snapshot) {
			s.Payments["b"].Refunded = 400
		}, []string{"cancelled_charged [order=b payment=pb]", "money_unbalanced [currency=USD]"}},
		{"a CANCELLED order holding stock", func(s *audit.Snapshot) {
			s.Reservations["b"].Status = audit.ReservationReserved
			s.Products["L"].Reserved = 9
		}, []string{"cancelled_holds_stock [order=b reservation=rb]", "read_model_mismatch [order=b]", "stock_unbalanced [sku=L]"}},
		{"a payment of another amount than its order", func(s *audit.Snapshot) {
			s.Payments["a"].Amount = 499
		}, []string{"money_unbalanced [currency=USD]", "payment_mismatch [order=a payment=pa]"}},
		{"a voided payment with an amount", func(s *audit.Snapshot) {
			s.Payments["d"].Amount = 100
		}, []string{"payment_mismatch [order=d payment=pd]"}},
		{"negative stock", func(s *audit.Snapshot) {
			s.Products["X"].Available = -1
		}, []string{"stock_negative [sku=X]"}},
		{"reserved stock no CONFIRMED order explains", func(s *audit.Snapshot) {
			s.Products["X"].Reserved = 3
		}, []string{"stock_unbalanced [sku=X]"}},
		{"a CONFIRMED order of a SKU the catalog does not list", func(s *audit.Snapshot) {
			delete(s.Products, "K")
		}, []string{"stock_unbalanced [sku=K]"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := settled()
			c.corrupt(s)
			r := audit.Check(s, time.Minute)
			var got []string
			for _, v := range r.Violations {
				got = append(got, string(v.Kind)+" ["+joinIDs(v.IDs)+"]")
				require.NotEmpty(t, v.Detail)
				require.Contains(t, audit.Kinds, v.Kind)
			}
			require.Equal(t, c.want, got, "violations: %v", r.Violations)
		})
	}
}

func TestCheckLeavesRunningSagasAlone(t *testing.T) {
	s := settled()
	// Order e is in flight, within its deadline: its stock is already
	// reserved and its payment captured, and nothing is reported.
	s.Sagas["e"] = []*audit.Saga{{ID: "se", OrderID: "e", State: audit.SagaRunning, Deadline: now.Add(10 * time.Second)}}
	s.Orders["e"] = &audit.Order{ID: "e", Status: audit.OrderPending, Currency: "USD", Total: 100, Lines: map[string]int64{"M": 1}}
	s.Payments["e"] = &audit.Payment{ID: "pe", OrderID: "e", Status: audit.PaymentCaptured, Currency: "USD", Amount: 100}
	s.Products["M"].Reserved++
	s.Quiescent = false
	r := audit.Check(s, 0)
	require.Empty(t, r.Violations)
	require.Equal(t, 1, r.InFlight)

	t.Run("but a quiescent snapshot compares the stock counters", func(t *testing.T) {
		s.Sagas["e"][0].State = audit.SagaCompensated
		s.Orders["e"].Status = audit.OrderCancelled
		s.Payments["e"].Status, s.Payments["e"].Refunded = audit.PaymentRefunded, 100
		s.Quiescent = true
		r := audit.Check(s, 0)
		require.Len(t, r.Violations, 1)
		require.Equal(t, audit.KindStockUnbalanced, r.Violations[0].Kind)
		require.Equal(t, map[audit.Kind]int{audit.KindStockUnbalanced: 1}, r.Count())
	})

	t.Run("and once past its deadline plus the grace it is overdue", func(t *testing.T) {
		s := settled()
		s.Sagas["e"] = []*audit.Saga{{ID: "se", OrderID: "e", State: audit.SagaCompensating, Deadline: now.Add(-2 * time.Minute)}}
		s.Orders["e"] = &audit.Order{ID: "e", Status: audit.OrderPending, Currency: "USD"}
		require.Empty(t, audit.Check(s, 3*time.Minute).Violations, "within the grace")
		r := audit.Check(s, time.Minute)
		require.Equal(t, map[audit.Kind]int{audit.KindSagaOverdue: 1, audit.KindOrderNotTerminal: 1}, r.Count())
		require.Contains(t, r.Violations[1].String(), "saga_overdue [order=e saga=se] saga COMPENSATING 2m0s past its deadline")
	})
}

func joinIDs(ids []string) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += " "
		}
		out += id
	}
	return out
}

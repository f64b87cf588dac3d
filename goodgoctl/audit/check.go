package audit

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"
)

// Kind names one invariant, as the violations metric's label.
type Kind string

// The kinds of violation Check reports.
const (
	// An order is not CONFIRMED or CANCELLED although its saga ended or
	// its deadline (plus the grace) has passed.
	KindOrderNotTerminal Kind = "order_not_terminal"
	// A saga is still running past its deadline plus the grace.
	KindSagaOverdue Kind = "saga_overdue"
	// A saga could not compensate and waits for an operator (RetrySaga).
	KindSagaParked Kind = "saga_parked"
	// A saga ended otherwise than its order (COMPLETED for a CANCELLED
	// order, COMPENSATED for a CONFIRMED one), an order has several
	// sagas, or a saga's order is unknown to the order service.
	KindSagaMismatch Kind = "saga_mismatch"
	// A CONFIRMED order's payment is not CAPTURED for its total, or was
	// refunded.
	KindConfirmedNotCharged Kind = "confirmed_not_charged"
	// A CONFIRMED order's stock is not RESERVED line for line.
	KindConfirmedNotReserved Kind = "confirmed_not_reserved"
	// A CANCELLED order's payment still holds money (CAPTURED, or REFUNDED
	// only in part).
	KindCancelledCharged Kind = "cancelled_charged"
	// A CANCELLED order's reservation still holds stock.
	KindCancelledHoldsStock Kind = "cancelled_holds_stock"
	// A payment's amount or currency is not its order's total, or a
	// DECLINED or VOIDED payment moved money.
	KindPaymentMismatch Kind = "payment_mismatch"
	// captured − refunded ≠ the CONFIRMED orders' totals (per currency).
	KindMoneyUnbalanced Kind = "money_unbalanced"
	// A SKU's available or reserved stock is negative.
	KindStockNegative Kind = "stock_negative"
	// A SKU's reserved stock is not the CONFIRMED orders' quantity of it.
	KindStockUnbalanced Kind = "stock_unbalanced"
	// The read model (CQRS) has no view of a settled order at its write
	// side's version, or its view differs from the write side.
	KindReadModelMismatch Kind = "read_model_mismatch"
)

// Kinds are every kind Check reports, for metrics that show a zero for the
// kinds that hold.
var Kinds = []Kind{
	KindOrderNotTerminal, KindSagaOverdue, KindSagaParked, KindSagaMismatch,
	KindConfirmedNotCharged, KindConfirmedNotReserved, KindCancelledCharged, KindCancelledHoldsStock,
	KindPaymentMismatch, KindMoneyUnbalanced, KindStockNegative, KindStockUnbalanced, KindReadModelMismatch,
}

// Violation is one broken invariant: its kind, the ids involved
// ("order=…", "saga=…", "payment=…", "reservation=…", "sku=…",
// "currency=…") and what was found.
type Violation struct {
	Kind   Kind
	IDs    []string
	Detail string
}

func (v Violation) String() string {
	return fmt.Sprintf("%s [%s] %s", v.Kind, strings.Join(v.IDs, " "), v.Detail)
}

// Report is the outcome of one audit.
type Report struct {
	Snapshot   *Snapshot
	Violations []Violation
	// Audited counts the orders whose saga had ended (checked in full);
	// InFlight those whose saga was still running.
	Audited, InFlight int
}

// Count returns the number of violations of each kind.
func (r *Report) Count() map[Kind]int {
	n := map[Kind]int{}
	for _, v := range r.Violations {
		n[v.Kind]++
	}
	return n
}

// Check returns the violations of s's invariants, sorted by kind and ids.
// A saga still running is overdue once TakenAt is past its deadline plus
// grace, which leaves it time to compensate.
func Check(s *Snapshot, grace time.Duration) *Report {
	c := &checker{s: s, r: &Report{Snapshot: s}}
	c.sagasAndOrders(grace)
	c.money()
	c.stock()
	sort.SliceStable(c.r.Violations, func(i, j int) bool {
		a, b := c.r.Violations[i], c.r.Violations[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return strings.Join(a.IDs, " ") < strings.Join(b.IDs, " ")
	})
	return c.r
}

type checker struct {
	s *Snapshot
	r *Report
	// settled are the orders whose saga has ended, as sagasAndOrders saw them.
	settled []*Order
}

func (c *checker) fail(kind Kind, ids []string, format string, args ...any) {
	c.r.Violations = append(c.r.Violations, Violation{Kind: kind, IDs: ids, Detail: fmt.Sprintf(format, args...)})
}

func (c *checker) sagasAndOrders(grace time.Duration) {
	for _, orderID := range slices.Sorted(maps.Keys(c.s.Sagas)) {
		sagas := c.s.Sagas[orderID]
		if len(sagas) == 0 {
			continue
		}
		sg := sagas[0]
		ids := []string{"order=" + orderID, "saga=" + sg.ID}
		if len(sagas) > 1 {
			all := make([]string, len(sagas))
			for i, x := range sagas {
				all[i] = "saga=" + x.ID
			}
			c.fail(KindSagaMismatch, append([]string{"order=" + orderID}, all...), "%d sagas for one order", len(sagas))
		}
		overdue := !sg.Deadline.IsZero() && c.s.TakenAt.After(sg.Deadline.Add(grace))
		switch {
		case running(sg.State):
			c.r.InFlight++
			if overdue {
				c.fail(KindSagaOverdue, ids, "saga %s %s past its deadline %s", sg.State,
					c.s.TakenAt.Sub(sg.Deadline).Round(time.Second), sg.Deadline.UTC().Format(time.RFC3339))
				c.orderTerminal(orderID, ids, "its deadline passed")
			}
			continue
		case sg.State == SagaParked:
			c.fail(KindSagaParked, ids, "saga PARKED: %s", sg.FailureReason)
			c.orderTerminal(orderID, ids, "its saga is PARKED")
			continue
		case !terminal(sg.State):
			c.fail(KindSagaMismatch, ids, "saga in unknown state %q", sg.State)
			continue
		}
		c.r.Audited++
		o := c.s.Orders[orderID]
		if o == nil {
			c.fail(KindSagaMismatch, ids, "saga %s for an order the order service does not know", sg.State)
			continue
		}
		if !c.orderTerminal(orderID, ids, "its saga is "+sg.State) {
			continue
		}
		if want := map[string]string{SagaCompleted: OrderConfirmed, SagaCompensated: OrderCancelled}[sg.State]; o.Status != want {
			c.fail(KindSagaMismatch, ids, "order %s but saga %s (%s)", o.Status, sg.State, sg.FailureReason)
		}
		c.settled = append(c.settled, o)
		c.order(o)
	}
}

// orderTerminal reports whether orderID is CONFIRMED or CANCELLED, and a
// violation if it is not, because of why.
func (c *checker) orderTerminal(orderID string, ids []string, why string) bool {
	o := c.s.Orders[orderID]
	if o != nil && (o.Status == OrderConfirmed || o.Status == OrderCancelled) {
		return true
	}
	status := "unknown to the order service"
	if o != nil {
		status = o.Status
	}
	c.fail(KindOrderNotTerminal, ids, "order %s although %s", status, why)
	return false
}

// order checks one settled order against its payment and reservation.
// view compares a settled order's view in the read model with the write
// side: the order's own fields and version, and the payment's and
// reservation's states (a VOIDED payment has no event, so no view state).
func (c *checker) view(o *Order) {
	v, ok := c.s.Views[o.ID]
	if !ok {
		return
	}
	ids := []string{"order=" + o.ID}
	if v.Missing != "" {
		c.fail(KindReadModelMismatch, ids, "no view at version %d: %s", o.Version, v.Missing)
		return
	}
	var diffs []string
	diff := func(field string, write, read any) {
		if write != read {
			diffs = append(diffs, fmt.Sprintf("%s %v, view %v", field, write, read))
		}
	}
	diff("status", o.Status, v.Status)
	diff("total", o.Total, v.Total)
	diff("currency", o.Currency, v.Currency)
	diff("cancel_reason", o.CancelReason, v.CancelReason)
	diff("version", o.Version, v.Version)
	if p := c.s.Payments[o.ID]; p != nil && p.Status != PaymentVoided {
		diff("payment", p.Status, v.PaymentStatus)
	}
	if r := c.s.Reservations[o.ID]; r != nil {
		diff("reservation", r.Status, v.InventoryStatus)
	}
	if len(diffs) > 0 {
		c.fail(KindReadModelMismatch, ids, "read model differs: %s", strings.Join(diffs, "; "))
	}
}

func (c *checker) order(o *Order) {
	c.view(o)
	p, r := c.s.Payments[o.ID], c.s.Reservations[o.ID]
	oid := "order=" + o.ID
	withPayment := []string{oid}
	if p != nil {
		withPayment = append(withPayment, "payment="+p.ID)
		switch {
		case p.Status == PaymentVoided && (p.Amount != 0 || p.Refunded != 0):
			c.fail(KindPaymentMismatch, withPayment, "VOIDED payment has amount %d, refunded %d", p.Amount, p.Refunded)
		case p.Status == PaymentDeclined && p.Refunded != 0:
			c.fail(KindPaymentMismatch, withPayment, "DECLINED payment refunded %d", p.Refunded)
		case p.Status != PaymentVoided && (p.Amount != o.Total || p.Currency != o.Currency):
			c.fail(KindPaymentMismatch, withPayment, "payment of %d %s for an order of %d %s", p.Amount, p.Currency, o.Total, o.Currency)
		}
	}
	withReservation := []string{oid}
	if r != nil {
		withReservation = append(withReservation, "reservation="+r.ID)
	}
	switch o.Status {
	case OrderConfirmed:
		switch {
		case p == nil:
			c.fail(KindConfirmedNotCharged, withPayment, "CONFIRMED order has no payment")
		case p.Status != PaymentCaptured || p.Refunded != 0:
			c.fail(KindConfirmedNotCharged, withPayment, "CONFIRMED order's payment is %s, refunded %d (want CAPTURED, none)", p.Status, p.Refunded)
		}
		switch {
		case r == nil:
			c.fail(KindConfirmedNotReserved, withReservation, "CONFIRMED order has no reservation")
		case r.Status != ReservationReserved:
			c.fail(KindConfirmedNotReserved, withReservation, "CONFIRMED order's reservation is %s (want RESERVED)", r.Status)
		case !maps.Equal(r.Lines, o.Lines):
			c.fail(KindConfirmedNotReserved, withReservation, "CONFIRMED order has lines %v, its reservation %v", o.Lines, r.Lines)
		}
	case OrderCancelled:
		switch {
		case p == nil:
		case p.Status == PaymentCaptured:
			c.fail(KindCancelledCharged, withPayment, "CANCELLED order's payment is CAPTURED (%d %s), not refunded", p.Amount, p.Currency)
		case p.Status == PaymentRefunded && p.Refunded != p.Amount:
			c.fail(KindCancelledCharged, withPayment, "CANCELLED order's payment refunded %d of %d", p.Refunded, p.Amount)
		}
		if r != nil && r.Status == ReservationReserved {
			c.fail(KindCancelledHoldsStock, withReservation, "CANCELLED order's reservation is RESERVED %v", r.Lines)
		}
	}
}

// money compares, per currency, what the settled orders' payments kept
// (captured − refunded) with the CONFIRMED orders' totals.
func (c *checker) money() {
	net, confirmed := map[string]int64{}, map[string]int64{}
	for _, o := range c.settled {
		if o.Status == OrderConfirmed {
			confirmed[o.Currency] += o.Total
		}
		if p := c.s.Payments[o.ID]; p != nil && (p.Status == PaymentCaptured || p.Status == PaymentRefunded) {
			net[p.Currency] += p.Amount - p.Refunded
		}
	}
	for cur := range confirmed {
		net[cur] += 0 // a currency with CONFIRMED orders but no money kept
	}
	for _, cur := range slices.Sorted(maps.Keys(net)) {
		if net[cur] != confirmed[cur] {
			c.fail(KindMoneyUnbalanced, []string{"currency=" + cur},
				"captured - refunded = %d, CONFIRMED orders total %d", net[cur], confirmed[cur])
		}
	}
}

// stock checks every SKU for negative counts and, when the snapshot is
// quiescent, its reserved count against the CONFIRMED orders' quantities.
func (c *checker) stock() {
	want := map[string]int64{}
	for _, o := range c.settled {
		if o.Status == OrderConfirmed {
			for sku, n := range o.Lines {
				want[sku] += n
			}
		}
	}
	skus := slices.Sorted(maps.Keys(c.s.Products))
	for sku := range want {
		if c.s.Products[sku] == nil {
			skus = append(skus, sku)
		}
	}
	for _, sku := range skus {
		p := c.s.Products[sku]
		ids := []string{"sku=" + sku}
		if p == nil {
			c.fail(KindStockUnbalanced, ids, "CONFIRMED orders hold %d of a SKU the catalog does not list", want[sku])
			continue
		}
		if p.Available < 0 || p.Reserved < 0 {
			c.fail(KindStockNegative, ids, "available %d, reserved %d", p.Available, p.Reserved)
		}
		if c.s.Quiescent && p.Reserved != want[sku] {
			c.fail(KindStockUnbalanced, ids, "reserved %d, CONFIRMED orders' quantity %d", p.Reserved, want[sku])
		}
	}
}

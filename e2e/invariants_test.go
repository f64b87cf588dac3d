package e2e

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/goodgoctl/audit"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/grpcclient"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// Snapshot is what the services' own databases hold, read directly (tests
// may read them; services never read each other's): what the scenarios
// assert on, and what CheckInvariants checks below the APIs.
type Snapshot struct {
	Orders       map[string]*orderRow
	Payments     map[string]*paymentRow // by order id
	Products     map[string]*productRow
	Reservations map[string]*reservationRow // by order id
	Sagas        map[string][]*sagaRow      // by correlation id (order id)
	Outbox       map[string][]*outboxRow    // by database (service)
	InboxParked  int
}

type orderRow struct {
	ID, Status, Currency, CancelReason string
	Total                              int64
	Lines                              map[string]int64 // sku → quantity
}

type paymentRow struct {
	ID, OrderID, Status, Currency, DeclineReason string
	Amount, Refunded                             int64
}

type productRow struct {
	SKU                 string
	Available, Reserved int64
}

type reservationRow struct {
	ID, OrderID, Status, RejectReason string
	Lines                             map[string]int64
}

type sagaRow struct {
	ID, Type, State, FailureReason string
}

type outboxRow struct {
	EventID, Topic, AggregateType, AggregateID, EventType string
	Published, Parked                                     bool
}

// Snapshot reads every table the invariants look at.
func (e *Env) Snapshot(t testing.TB) *Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := &Snapshot{
		Orders: map[string]*orderRow{}, Payments: map[string]*paymentRow{}, Products: map[string]*productRow{},
		Reservations: map[string]*reservationRow{}, Sagas: map[string][]*sagaRow{}, Outbox: map[string][]*outboxRow{},
	}
	q := func(svc, sql string, scan func(pgx.Rows) error) {
		rows, err := e.DB[svc].Query(ctx, sql)
		require.NoError(t, err, "%s: %s", svc, sql)
		defer rows.Close()
		for rows.Next() {
			require.NoError(t, scan(rows))
		}
		require.NoError(t, rows.Err())
	}
	q(svcOrder, `SELECT id::text, status, currency_code, cancel_reason, total_minor FROM orders`, func(r pgx.Rows) error {
		o := &orderRow{Lines: map[string]int64{}}
		if err := r.Scan(&o.ID, &o.Status, &o.Currency, &o.CancelReason, &o.Total); err != nil {
			return err
		}
		s.Orders[o.ID] = o
		return nil
	})
	q(svcOrder, `SELECT order_id::text, sku, quantity FROM order_items`, func(r pgx.Rows) error {
		var id, sku string
		var n int64
		if err := r.Scan(&id, &sku, &n); err != nil {
			return err
		}
		if o := s.Orders[id]; o != nil {
			o.Lines[sku] += n
		}
		return nil
	})
	q(svcPayment, `SELECT id::text, order_id::text, status, currency_code, decline_reason, amount_minor, refunded_minor FROM payments`,
		func(r pgx.Rows) error {
			p := &paymentRow{}
			if err := r.Scan(&p.ID, &p.OrderID, &p.Status, &p.Currency, &p.DeclineReason, &p.Amount, &p.Refunded); err != nil {
				return err
			}
			if dup := s.Payments[p.OrderID]; dup != nil {
				return fmt.Errorf("order %s has two payments: %s and %s", p.OrderID, dup.ID, p.ID)
			}
			s.Payments[p.OrderID] = p
			return nil
		})
	q(svcInventory, `SELECT sku, available, reserved FROM products`, func(r pgx.Rows) error {
		p := &productRow{}
		if err := r.Scan(&p.SKU, &p.Available, &p.Reserved); err != nil {
			return err
		}
		s.Products[p.SKU] = p
		return nil
	})
	byReservation := map[string]*reservationRow{}
	q(svcInventory, `SELECT id::text, order_id::text, status, reject_reason FROM reservations`, func(r pgx.Rows) error {
		v := &reservationRow{Lines: map[string]int64{}}
		if err := r.Scan(&v.ID, &v.OrderID, &v.Status, &v.RejectReason); err != nil {
			return err
		}
		if dup := s.Reservations[v.OrderID]; dup != nil {
			return fmt.Errorf("order %s has two reservations: %s and %s", v.OrderID, dup.ID, v.ID)
		}
		s.Reservations[v.OrderID], byReservation[v.ID] = v, v
		return nil
	})
	q(svcInventory, `SELECT reservation_id::text, sku, quantity FROM reservation_items`, func(r pgx.Rows) error {
		var id, sku string
		var n int64
		if err := r.Scan(&id, &sku, &n); err != nil {
			return err
		}
		if v := byReservation[id]; v != nil {
			v.Lines[sku] += n
		}
		return nil
	})
	q(svcOrchestrator, `SELECT id::text, saga_type, correlation_id, state, failure_reason FROM sagas`, func(r pgx.Rows) error {
		v := &sagaRow{}
		var corr string
		if err := r.Scan(&v.ID, &v.Type, &corr, &v.State, &v.FailureReason); err != nil {
			return err
		}
		s.Sagas[corr] = append(s.Sagas[corr], v)
		return nil
	})
	require.NoError(t, e.DB[svcOrchestrator].QueryRow(ctx,
		`SELECT count(*) FROM inbox_parked WHERE resolved_at IS NULL`).Scan(&s.InboxParked))
	for _, svc := range []string{svcOrder, svcPayment, svcInventory} {
		q(svc, `SELECT event_id::text, topic, aggregate_type, aggregate_id, event_type,
		               published_at IS NOT NULL, parked_at IS NOT NULL FROM outbox ORDER BY id`, func(r pgx.Rows) error {
			o := &outboxRow{}
			if err := r.Scan(&o.EventID, &o.Topic, &o.AggregateType, &o.AggregateID, &o.EventType, &o.Published, &o.Parked); err != nil {
				return err
			}
			s.Outbox[svc] = append(s.Outbox[svc], o)
			return nil
		})
	}
	return s
}

// unpublished counts the outbox rows of the three databases not yet
// published (parked rows included: they never will be).
func (e *Env) unpublished(t testing.TB) int {
	t.Helper()
	n := 0
	for _, svc := range []string{svcOrder, svcPayment, svcInventory} {
		var c int
		require.NoError(t, e.DB[svc].QueryRow(context.Background(),
			`SELECT count(*) FROM outbox WHERE published_at IS NULL`).Scan(&c))
		n += c
	}
	return n
}

// Audit runs the consistency auditor (goodgoctl/audit) over the services'
// gRPC APIs as an operator, as `goodgoctl audit` does.
func (e *Env) Audit(t testing.TB) *audit.Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e.auditOnce.Do(func() {
		e.auditClients = audit.Clients{
			Orders:   orderv1.NewOrderServiceClient(e.conn(svcOrder, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator)))),
			Views:    orderv1.NewOrderQueryServiceClient(e.conn(svcOrder, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator)))),
			Payments: e.Payments, Inventory: e.Inventory, Sagas: e.Sagas,
		}
	})
	s, err := audit.Collect(ctx, e.auditClients, audit.CollectOptions{})
	require.NoError(t, err, "audit")
	return audit.Check(s, time.Minute)
}

// CheckInvariants waits until the relay has published every outbox row,
// then checks DESIGN.md §6 over the whole environment.
//
// The business invariants are the consistency auditor's (goodgoctl/audit),
// which reads only the services' APIs: every order CONFIRMED or CANCELLED
// with its saga ended alike (none RUNNING, COMPENSATING or PARKED, one per
// order); a CONFIRMED order's payment CAPTURED for its total and its stock
// RESERVED line for line; a CANCELLED order's payment absent, DECLINED,
// VOIDED or fully REFUNDED and its reservation absent, REJECTED or
// RELEASED; captured − refunded = the CONFIRMED orders' totals; no SKU
// negative and each SKU's reserved stock = the CONFIRMED orders' quantity;
// each settled order's read model view (CQRS) equal to the write side, read
// at the order's version. The audit must be quiescent (no saga running), so that the stock
// counters are compared.
//
// What only the test can know, or what lies below the APIs, is checked
// here from the databases and Kafka:
//
//   - the auditor saw everything: every order has a saga (the auditor
//     finds orders through their sagas), and no payment or reservation
//     belongs to an order without one;
//   - stock is conserved: per SKU, the environment's baseline − available
//     = reserved;
//   - every outbox row is published (none parked) and its event is on its
//     topic with the aggregate id as key, and Kafka holds nothing else;
//     each effect emitted its event exactly once (one order.created per
//     order, one confirmed/cancelled per outcome, one processed/declined/
//     refunded per payment change, one reserved/rejected/released per
//     reservation change): nothing was done twice;
//   - no parked inbox event in the orchestrator.
//
// It returns the databases' snapshot for scenario-specific checks.
func (e *Env) CheckInvariants(t testing.TB) *Snapshot {
	t.Helper()
	var left int
	ok := poll(60*time.Second, 100*time.Millisecond, func() bool { left = e.unpublished(t); return left == 0 })
	require.True(t, ok, "%d outbox rows still unpublished after 60s", left)
	s := e.Snapshot(t)
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	// The business invariants, through the APIs.
	auditStart := time.Now()
	report := e.Audit(t)
	audited := time.Since(auditStart)
	for _, v := range report.Violations {
		fail("%s", v)
	}
	if !report.Snapshot.Quiescent {
		fail("the audit saw %d sagas in flight: stock counters not compared", report.InFlight)
	}

	// The auditor saw every order, payment and reservation.
	for id := range s.Orders {
		if report.Snapshot.Orders[id] == nil {
			fail("order %s has no saga: the auditor cannot see it", id)
		}
	}
	for orderID, p := range s.Payments {
		if s.Orders[orderID] == nil {
			fail("payment %s for unknown order %s", p.ID, orderID)
		}
	}
	for orderID, r := range s.Reservations {
		if s.Orders[orderID] == nil {
			fail("reservation %s for unknown order %s", r.ID, orderID)
		}
	}
	if s.InboxParked > 0 {
		fail("%d parked inbox events in the orchestrator", s.InboxParked)
	}

	// Stock conservation against the baseline only the test knows.
	e.baselineMu.Lock()
	for sku, p := range s.Products {
		if base := e.baseline[sku]; base-p.Available != p.Reserved {
			fail("%s: initial %d - available %d = %d; reserved %d", sku, base, p.Available, base-p.Available, p.Reserved)
		}
	}
	e.baselineMu.Unlock()

	// Events: every outbox row reached Kafka, and each effect emitted once.
	errs = append(errs, e.checkEvents(t, s)...)

	if len(errs) > 0 {
		sort.Strings(errs)
		if len(errs) > 40 {
			errs = append(errs[:40], fmt.Sprintf("… and %d more", len(errs)-40))
		}
		require.Failf(t, "invariants violated", "%d violations:\n%s", len(errs), strings.Join(errs, "\n"))
	}
	confirmed := 0
	for _, o := range report.Snapshot.Orders {
		if o.Status == audit.OrderConfirmed {
			confirmed++
		}
	}
	t.Logf("invariants hold: %d orders audited through the APIs in %s (%d CONFIRMED), %d payments, %d reservations, %d outbox events",
		report.Audited, audited.Round(time.Millisecond), confirmed, len(s.Payments), len(s.Reservations),
		len(s.Outbox[svcOrder])+len(s.Outbox[svcPayment])+len(s.Outbox[svcInventory]))
	return s
}

// checkEvents compares the outbox rows with the topics and counts the
// events of each aggregate.
func (e *Env) checkEvents(t testing.TB, s *Snapshot) []string {
	t.Helper()
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	inKafka := map[string]kafkaEvent{}
	dups := 0
	for _, topic := range event.Topics {
		evs, err := readTopic(ctx, e.Broker.Addr(), topic)
		require.NoError(t, err)
		for _, ev := range evs {
			if _, seen := inKafka[ev.ID]; seen {
				dups++ // at-least-once delivery allows it; reported, not failed
			}
			inKafka[ev.ID] = ev
		}
	}
	if dups > 0 {
		t.Logf("kafka holds %d duplicate deliveries (at-least-once)", dups)
	}
	count := map[string]int{} // event type + "/" + aggregate id
	inOutbox := map[string]bool{}
	for svc, rows := range s.Outbox {
		for _, r := range rows {
			inOutbox[r.EventID] = true
			count[r.EventType+"/"+r.AggregateID]++
			switch ev, ok := inKafka[r.EventID]; {
			case r.Parked:
				fail("%s outbox event %s (%s) parked", svc, r.EventID, r.EventType)
			case !r.Published:
				fail("%s outbox event %s (%s) unpublished", svc, r.EventID, r.EventType)
			case !ok:
				fail("%s outbox event %s (%s of %s) marked published but not in Kafka", svc, r.EventID, r.EventType, r.AggregateID)
			case ev.Topic != r.Topic || ev.Key != r.AggregateID || ev.Type != r.EventType:
				fail("event %s: outbox %s/%s/%s, kafka %s/%s/%s", r.EventID, r.Topic, r.AggregateID, r.EventType, ev.Topic, ev.Key, ev.Type)
			}
		}
	}
	for id, ev := range inKafka {
		if !inOutbox[id] {
			fail("kafka event %q (%s on %s) is in no outbox", id, ev.Type, ev.Topic)
		}
	}
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	expect := func(typ, agg string, want int) {
		if got := count[typ+"/"+agg]; got != want {
			fail("%d %s events for %s, want %d", got, typ, agg, want)
		}
	}
	for id, o := range s.Orders {
		expect(event.OrderCreated, id, 1)
		expect(event.OrderConfirmed, id, b2i(o.Status == "CONFIRMED"))
		expect(event.OrderCancelled, id, b2i(o.Status == "CANCELLED"))
	}
	for _, p := range s.Payments {
		// A VOIDED payment moved no money and emits nothing.
		expect(event.PaymentProcessed, p.ID, b2i(p.Status == "CAPTURED" || p.Status == "REFUNDED"))
		expect(event.PaymentDeclined, p.ID, b2i(p.Status == "DECLINED"))
		expect(event.PaymentRefunded, p.ID, b2i(p.Status == "REFUNDED"))
	}
	for orderID, r := range s.Reservations {
		// A RELEASED tombstone (no lines) never reserved anything.
		expect(event.InventoryReserved, orderID, b2i(r.Status == "RESERVED" || (r.Status == "RELEASED" && len(r.Lines) > 0)))
		expect(event.InventoryRejected, orderID, b2i(r.Status == "REJECTED"))
		expect(event.InventoryReleased, orderID, b2i(r.Status == "RELEASED"))
	}
	return errs
}

// recorder is a testing.TB that records failures instead of reporting
// them, to prove that a check fails when it should. FailNow ends the
// calling goroutine, as testing does.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	failed bool
	msgs   []string
}

func (r *recorder) Helper()                   {}
func (r *recorder) Logf(string, ...any)       {}
func (r *recorder) Log(...any)                {}
func (r *recorder) Fail()                     { r.mu.Lock(); r.failed = true; r.mu.Unlock() }
func (r *recorder) FailNow()                  { r.Fail(); runtime.Goexit() }
func (r *recorder) Fatalf(f string, a ...any) { r.Errorf(f, a...); runtime.Goexit() }
func (r *recorder) Failed() bool              { r.mu.Lock(); defer r.mu.Unlock(); return r.failed }
func (r *recorder) Errorf(f string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failed = true
	r.msgs = append(r.msgs, fmt.Sprintf(f, a...))
}

// failures runs check with a recorder and returns what it reported
// ("" when it passed).
func failures(t testing.TB, check func(testing.TB)) string {
	r := &recorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(r)
	}()
	<-done
	if !r.Failed() {
		return ""
	}
	return strings.Join(r.msgs, "\n")
}

package reconciler_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
	"github.com/goodgo/goodgo/services/orchestrator/internal/reconciler"
)

// services fake the order, payment and inventory services: orders are
// PENDING until the saga confirms or cancels them, every call is counted.
type services struct {
	mu      sync.Mutex
	pending []checkout.Order // listed while neither confirmed nor cancelled
	done    map[string]string
	calls   map[string]int // "<method> <order id>"
	cancels []string       // "<user> <key> <reason>"
	listErr error
}

func newServices(orders ...checkout.Order) *services {
	return &services{pending: orders, done: map[string]string{}, calls: map[string]int{}}
}

func (s *services) count(method, orderID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method+" "+orderID]
}

func (s *services) state(orderID string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.done[orderID]; st != "" {
		return st
	}
	return "PENDING"
}

func (s *services) record(method, orderID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[method+" "+orderID]++
}

// StalePending lists two open orders a page, keyset-paged like the order
// service: the token is the index in pending of the page's last order.
func (s *services) StalePending(_ context.Context, olderThan time.Duration, token string) ([]checkout.Order, string, error) {
	if olderThan != 90*time.Second {
		return nil, "", fmt.Errorf("older than %s", olderThan)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listErr != nil {
		return nil, "", s.listErr
	}
	after := -1
	if token != "" {
		_, _ = fmt.Sscan(token, &after)
	}
	var page []checkout.Order
	for i := after + 1; i < len(s.pending); i++ {
		if s.done[s.pending[i].OrderID] != "" {
			continue
		}
		if len(page) == 2 {
			return page, fmt.Sprint(after), nil
		}
		page, after = append(page, s.pending[i]), i
	}
	return page, "", nil
}

func (s *services) Cancel(ctx context.Context, key, orderID, reason string) error {
	d, _ := caller.DelegationFrom(ctx)
	s.record("CancelOrder", orderID)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancels = append(s.cancels, d.User+" "+key+" "+reason)
	s.done[orderID] = "CANCELLED"
	return nil
}

func (s *services) Confirm(_ context.Context, _, orderID string) error {
	s.record("ConfirmOrder", orderID)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[orderID] = "CONFIRMED"
	return nil
}

func (s *services) Charge(_ context.Context, _ string, o checkout.Order) (checkout.Payment, error) {
	s.record("ProcessPayment", o.OrderID)
	return checkout.Payment{}, nil
}

func (s *services) Refund(_ context.Context, _, orderID, _ string) error {
	s.record("RefundPayment", orderID)
	return nil
}

func (s *services) Reserve(_ context.Context, _, orderID string, _ []checkout.Item) (checkout.Reservation, error) {
	s.record("ReserveStock", orderID)
	return checkout.Reservation{}, nil
}

func (s *services) Release(_ context.Context, _, orderID string) error {
	s.record("ReleaseStock", orderID)
	return nil
}

// replica is one orchestrator replica's engine and reconciler.
type replica struct {
	engine *saga.Engine
	rec    *reconciler.Reconciler
	reg    *prometheus.Registry
}

// newReplica runs a saga engine named owner on pool, with a reconciler over
// svc.
func newReplica(t *testing.T, pool *pgxpool.Pool, keys *keyring.Keyring, owner string, svc *services) replica {
	t.Helper()
	reg := prometheus.NewRegistry()
	engine, err := saga.New(pool, keys, saga.Options{Owner: owner, PollInterval: 50 * time.Millisecond, Registerer: reg},
		checkout.Definition(svc, svc, svc))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- engine.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	rec, err := reconciler.New(svc, engine, reconciler.Config{Interval: time.Hour, OlderThan: 90 * time.Second}, reg, nil)
	require.NoError(t, err)
	return replica{engine: engine, rec: rec, reg: reg}
}

func setup(t *testing.T, svc *services, replicas int) (*pgxpool.Pool, []replica) {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.Orchestrator)
	keys, err := keyring.New("k1", map[string][]byte{"k1": servicetest.NewKey(t)})
	require.NoError(t, err)
	out := make([]replica, replicas)
	for i := range out {
		out[i] = newReplica(t, pool, keys, fmt.Sprintf("replica-%d", i), svc)
	}
	return pool, out
}

func stale(id, user string) checkout.Order {
	return checkout.Order{
		OrderID: id, CustomerID: "c-" + user, AmountMinor: 500, Currency: "EUR", PaymentMethod: "tok_visa",
		Items: []checkout.Item{{SKU: "SKU-1", Quantity: 1}}, PlacedBy: user, Permissions: checkout.Permissions,
	}
}

func sagasOf(t *testing.T, pool *pgxpool.Pool, orderID string) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM sagas WHERE correlation_id = $1", orderID).Scan(&n))
	return n
}

// Several replicas reconcile the same stale orders at once (three pages):
// each order gets one saga, its steps run once, and it ends CONFIRMED.
func TestReplicasStartOneSagaPerOrder(t *testing.T) {
	t.Parallel()
	var orders []checkout.Order
	for i := range 5 {
		orders = append(orders, stale(fmt.Sprintf("order-%d", i), "alice"))
	}
	svc := newServices(orders...)
	pool, replicas := setup(t, svc, 3)

	var wg sync.WaitGroup
	stats := make([]reconciler.Stats, len(replicas))
	for i, r := range replicas {
		wg.Go(func() {
			var err error
			stats[i], err = r.rec.Pass(context.Background())
			require.NoError(t, err)
		})
	}
	wg.Wait()
	started, looked := 0, 0
	for _, s := range stats {
		require.Zero(t, s[reconciler.OutcomeFailed])
		require.Zero(t, s[reconciler.OutcomeCancelled])
		started += s[reconciler.OutcomeStarted]
		looked += s[reconciler.OutcomeStarted] + s[reconciler.OutcomeHasSaga]
	}
	require.Equal(t, len(orders), started, "one replica started each saga")
	require.GreaterOrEqual(t, looked, len(orders))
	var metricStarted float64
	for _, r := range replicas {
		metricStarted += servicetest.Metric(t, r.reg, "reconciler_orders_total", "outcome", reconciler.OutcomeStarted)
	}
	require.Equal(t, float64(len(orders)), metricStarted, "counted in reconciler_orders_total")

	for _, o := range orders {
		require.Eventually(t, func() bool { return svc.state(o.OrderID) == "CONFIRMED" }, 20*time.Second, 10*time.Millisecond)
		require.Equal(t, 1, sagasOf(t, pool, o.OrderID))
		for _, m := range []string{"ProcessPayment", "ReserveStock", "ConfirmOrder"} {
			require.Equal(t, 1, svc.count(m, o.OrderID), "%s of %s", m, o.OrderID)
		}
	}

	// A later pass finds nothing left to do.
	s, err := replicas[0].rec.Pass(context.Background())
	require.NoError(t, err)
	require.Empty(t, s)
}

// An order that has a saga — running or finished, started by its event —
// is left alone, however long it has been PENDING.
func TestOrdersWithASagaAreLeftAlone(t *testing.T) {
	t.Parallel()
	o := stale("order-busy", "alice")
	svc := newServices(o)
	pool, replicas := setup(t, svc, 1)
	data, err := o.Marshal()
	require.NoError(t, err)
	// A saga stored without running (as if its replica died at once).
	tx, err := pool.Begin(context.Background())
	require.NoError(t, err)
	r, err := replicas[0].engine.StartTx(context.Background(), tx, saga.StartRequest{Type: checkout.SagaType, CorrelationID: o.OrderID, StartedBy: "alice", Data: data})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(context.Background()))

	s, err := replicas[0].rec.Pass(context.Background())
	require.NoError(t, err)
	require.Equal(t, reconciler.Stats{reconciler.OutcomeHasSaga: 1}, s)
	require.Equal(t, 1, sagasOf(t, pool, o.OrderID))
	got, err := replicas[0].engine.Get(context.Background(), r.SagaID)
	require.NoError(t, err)
	require.Equal(t, o.OrderID, got.CorrelationID)
}

// An order no saga can run is cancelled for its placer with a reason, once
// whatever the replicas (a fixed idempotency key); no saga is started.
func TestOrdersNoSagaCanRunAreCancelled(t *testing.T) {
	t.Parallel()
	broken := stale("order-broken", "bob")
	broken.Items = nil
	svc := newServices(broken)
	pool, replicas := setup(t, svc, 1)

	s, err := replicas[0].rec.Pass(context.Background())
	require.NoError(t, err)
	require.Equal(t, reconciler.Stats{reconciler.OutcomeCancelled: 1}, s)
	require.Equal(t, "CANCELLED", svc.state(broken.OrderID))
	require.Equal(t, []string{"bob reconcile:order-broken:cancel " + reconciler.CancelReason}, svc.cancels)
	require.Zero(t, sagasOf(t, pool, broken.OrderID))
}

// A pass that cannot list the orders fails, is counted, and leaves
// everything for the next one.
func TestAFailedListingFailsThePass(t *testing.T) {
	t.Parallel()
	svc := newServices(stale("order-1", "alice"))
	svc.listErr = errors.New("rpc error: code = Unavailable")
	pool, replicas := setup(t, svc, 1)
	_, err := replicas[0].rec.Pass(context.Background())
	require.ErrorContains(t, err, "Unavailable")
	require.Zero(t, sagasOf(t, pool, "order-1"))
	require.Equal(t, 1.0, servicetest.Metric(t, replicas[0].reg, "reconciler_passes_total", "result", "error"))
	require.Zero(t, servicetest.Metric(t, replicas[0].reg, "reconciler_passes_total", "result", "ok"))
}

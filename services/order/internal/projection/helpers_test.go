package projection_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// testBundle is a read database, a development broker and a producer.
type testBundle struct {
	pool    *pgxpool.Pool
	brokers []string
	writer  *kafka.Writer
	keys    *keyring.Keyring
}

func setup(t testing.TB) *testBundle {
	t.Helper()
	_, pool := pgtest.NewDatabase(t, db.OrderRead)
	b, err := broker.Start(context.Background(), broker.Config{Addr: "127.0.0.1:0", Partitions: 4})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	w := &kafka.Writer{
		Addr: kafka.TCP(b.Addr()), Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond, BatchSize: 1000,
	}
	t.Cleanup(func() { _ = w.Close() })
	keys, err := keyring.New("k1", map[string][]byte{"k1": []byte("0123456789abcdef0123456789abcdef")})
	require.NoError(t, err)
	return &testBundle{pool: pool, brokers: []string{b.Addr()}, writer: w, keys: keys}
}

// projector runs a projector on table until the test ends or the returned
// stop is called (which waits for Run to return).
func (tb *testBundle) projector(t testing.TB, table, group string, reg prometheus.Registerer, opts projection.Options) (stop func()) {
	t.Helper()
	store, err := projection.NewStore(tb.pool, table, group, tb.keys)
	require.NoError(t, err)
	m, err := projection.NewMetrics(reg)
	require.NoError(t, err)
	p, err := projection.New(projection.Config{Config: inbox.Config{Brokers: tb.brokers, GroupID: group, CommitInterval: commitInterval, MaxWait: maxWait, BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond}}, store, m, opts)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
	}
	t.Cleanup(stop)
	return stop
}

// ev is an event as the outbox relay publishes it.
type ev struct {
	id      uuid.UUID
	topic   string
	typ     string
	aggType string
	aggID   string
	version int64
	payload []byte
	at      time.Time
}

func (e ev) message() kafka.Message {
	h := []kafka.Header{
		{Key: event.HeaderEventID, Value: []byte(e.id.String())},
		{Key: event.HeaderEventType, Value: []byte(e.typ)},
		{Key: event.HeaderAggregateType, Value: []byte(e.aggType)},
		{Key: event.HeaderAggregateID, Value: []byte(e.aggID)},
		{Key: event.HeaderAggregateVersion, Value: []byte(strconv.FormatInt(e.version, 10))},
		{Key: event.HeaderOccurredAt, Value: []byte(e.at.UTC().Format(time.RFC3339Nano))},
		{Key: event.HeaderContentType, Value: []byte(event.ContentTypeProtobuf)},
	}
	return kafka.Message{Topic: e.topic, Key: []byte(e.aggID), Value: e.payload, Headers: h}
}

func (tb *testBundle) publish(t testing.TB, evs ...ev) {
	t.Helper()
	msgs := make([]kafka.Message, len(evs))
	for i, e := range evs {
		msgs[i] = e.message()
	}
	require.NoError(t, tb.writer.WriteMessages(context.Background(), msgs...))
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	require.NoError(t, err)
	return b
}

// order is a write-side order's history, whose events the tests publish.
type order struct {
	id       uuid.UUID
	customer string
	payment  string
	reserve  string
	version  int64 // order aggregate
	pversion int64
	iversion int64
}

func newOrder(customer string) *order {
	return &order{id: uuid.New(), customer: customer, payment: uuid.NewString(), reserve: uuid.NewString()}
}

func (o *order) orderEv(t testing.TB, typ string, m proto.Message) ev {
	o.version++
	return ev{id: uuid.New(), topic: event.TopicOrder, typ: typ, aggType: event.AggregateOrder, aggID: o.id.String(),
		version: o.version, payload: mustMarshal(t, m), at: time.Now()}
}

func (o *order) created(t testing.TB, total int64) ev {
	return o.orderEv(t, event.OrderCreated, &orderv1.OrderCreated{
		OrderId: o.id.String(), CustomerId: o.customer,
		Items: []*commonv1.LineItem{{Sku: "SKU-1", Name: "Thing", Quantity: 2, UnitPrice: &commonv1.Money{CurrencyCode: "EUR", AmountMinor: total / 2}}},
		Total: &commonv1.Money{CurrencyCode: "EUR", AmountMinor: total},
	})
}

func (o *order) confirmed(t testing.TB) ev {
	return o.orderEv(t, event.OrderConfirmed, &orderv1.OrderConfirmed{OrderId: o.id.String()})
}

func (o *order) cancelled(t testing.TB, reason string) ev {
	return o.orderEv(t, event.OrderCancelled, &orderv1.OrderCancelled{OrderId: o.id.String(), Reason: reason})
}

func (o *order) paymentEv(t testing.TB, typ string, m proto.Message) ev {
	o.pversion++
	return ev{id: uuid.New(), topic: event.TopicPayment, typ: typ, aggType: event.AggregatePayment, aggID: o.payment,
		version: o.pversion, payload: mustMarshal(t, m), at: time.Now()}
}

func (o *order) paid(t testing.TB) ev {
	return o.paymentEv(t, event.PaymentProcessed, &paymentv1.PaymentProcessed{PaymentId: o.payment, OrderId: o.id.String()})
}

func (o *order) declined(t testing.TB) ev {
	return o.paymentEv(t, event.PaymentDeclined, &paymentv1.PaymentDeclined{PaymentId: o.payment, OrderId: o.id.String(), Reason: "card_declined"})
}

func (o *order) refunded(t testing.TB) ev {
	return o.paymentEv(t, event.PaymentRefunded, &paymentv1.PaymentRefunded{PaymentId: o.payment, OrderId: o.id.String(), Reason: "compensation"})
}

func (o *order) stockEv(t testing.TB, typ string, m proto.Message) ev {
	o.iversion++
	return ev{id: uuid.New(), topic: event.TopicInventory, typ: typ, aggType: event.AggregateReservation, aggID: o.id.String(),
		version: o.iversion, payload: mustMarshal(t, m), at: time.Now()}
}

func (o *order) reserved(t testing.TB) ev {
	return o.stockEv(t, event.InventoryReserved, &inventoryv1.StockReserved{ReservationId: o.reserve, OrderId: o.id.String()})
}

func (o *order) rejected(t testing.TB) ev {
	return o.stockEv(t, event.InventoryRejected, &inventoryv1.StockRejected{ReservationId: o.reserve, OrderId: o.id.String(), Reason: "insufficient_stock"})
}

func (o *order) released(t testing.TB) ev {
	return o.stockEv(t, event.InventoryReleased, &inventoryv1.StockReleased{ReservationId: o.reserve, OrderId: o.id.String()})
}

// viewOf reads an order's row from table (visible or not); ok false when
// there is none.
func viewOf(t testing.TB, pool *pgxpool.Pool, table string, id uuid.UUID) (row viewRow, ok bool) {
	t.Helper()
	err := pool.QueryRow(context.Background(), `SELECT customer_id, status, total_minor, payment_status, inventory_status,
 cancel_reason, order_version, payment_version, inventory_version FROM `+table+` WHERE order_id = $1`, id).
		Scan(&row.Customer, &row.Status, &row.Total, &row.Payment, &row.Stock, &row.Reason, &row.OV, &row.PV, &row.IV)
	if err != nil {
		return viewRow{}, false
	}
	return row, true
}

type viewRow struct {
	Customer, Status       string
	Total                  int64
	Payment, Stock, Reason string
	OV, PV, IV             int64
}

// commitInterval is the projectors' Config.CommitInterval in the tests.
var commitInterval = time.Second

// maxWait is the projectors' Config.MaxWait in the tests.
var maxWait = 20 * time.Millisecond

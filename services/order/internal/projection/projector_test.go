package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// scenario is a burst of orders of every outcome and the view each must
// end with.
type scenario struct {
	orders []*order
	want   map[uuid.UUID]viewRow
	events []ev
}

// burst builds n orders of each outcome. Each order's payment and stock
// events are published before its order.created half of the time: they
// are on other topics, so the projector can read them first.
func burst(t testing.TB, n int) scenario {
	s := scenario{want: map[uuid.UUID]viewRow{}}
	for i := range n {
		for kind := range 4 {
			o := newOrder(fmt.Sprintf("cust-%d", i%7))
			s.orders = append(s.orders, o)
			created := o.created(t, 1000)
			var rest []ev
			var w viewRow
			switch kind {
			case 0: // good
				rest = []ev{o.paid(t), o.reserved(t), o.confirmed(t)}
				w = viewRow{Status: "CONFIRMED", Payment: "CAPTURED", Stock: "RESERVED", OV: 2, PV: 1, IV: 1}
			case 1: // declined
				rest = []ev{o.declined(t), o.cancelled(t, "payment declined")}
				w = viewRow{Status: "CANCELLED", Payment: "DECLINED", Reason: "payment declined", OV: 2, PV: 1}
			case 2: // out of stock
				rest = []ev{o.paid(t), o.rejected(t), o.refunded(t), o.cancelled(t, "out of stock")}
				w = viewRow{Status: "CANCELLED", Payment: "REFUNDED", Stock: "REJECTED", Reason: "out of stock", OV: 2, PV: 2, IV: 1}
			case 3: // compensated after the stock step
				rest = []ev{o.paid(t), o.reserved(t), o.released(t), o.refunded(t), o.cancelled(t, "confirm failed")}
				w = viewRow{Status: "CANCELLED", Payment: "REFUNDED", Stock: "RELEASED", Reason: "confirm failed", OV: 2, PV: 2, IV: 2}
			}
			w.Customer, w.Total = o.customer, 1000
			s.want[o.id] = w
			if i%2 == 0 {
				s.events = append(s.events, created)
				s.events = append(s.events, rest...)
			} else {
				// Within a topic the order holds (one partition per
				// aggregate); across topics it does not.
				var own []ev
				for _, e := range rest {
					if e.topic == created.topic {
						own = append(own, e)
					} else {
						s.events = append(s.events, e)
					}
				}
				s.events = append(s.events, created)
				s.events = append(s.events, own...)
			}
		}
	}
	return s
}

func (s scenario) requireConverged(t *testing.T, tb *testBundle, table string, within time.Duration) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for id, w := range s.want {
			got, ok := viewOf(t, tb.pool, table, id)
			require.True(c, ok, "order %s has no view", id)
			require.Equal(c, w, got, "order %s", id)
		}
	}, within, 20*time.Millisecond)
}

func TestProjectorBuildsTheViewOfEveryOutcome(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	reg := prometheus.NewRegistry()
	tb.projector(t, projection.Table, "order-read", reg, projection.Options{})
	s := burst(t, 10)
	tb.publish(t, s.events...)
	s.requireConverged(t, tb, projection.Table, 20*time.Second)
	require.Equal(t, float64(len(s.events)), events(t, reg, "applied"))
	require.Positive(t, testutil.CollectAndCount(reg, "order_projection_lag_seconds"))

	t.Run("duplicates and stale events change nothing", func(t *testing.T) {
		// Every event again (a relay that published twice), and the
		// order.created of an order whose view is CONFIRMED.
		tb.publish(t, s.events...)
		require.Eventually(t, func() bool {
			return events(t, reg, "duplicate") == float64(len(s.events))
		}, 20*time.Second, 20*time.Millisecond)
		s.requireConverged(t, tb, projection.Table, time.Second)
	})
}

// events is order_projection_events_total{result} in reg (0 before any).
func events(t testing.TB, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "order_projection_events_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestProjectorResumesAfterAStopWithoutChangingAnything(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	s := burst(t, 10)
	half := len(s.events) / 2
	stop := tb.projector(t, projection.Table, "order-read", nil, projection.Options{})
	tb.publish(t, s.events[:half]...)
	// Stopped mid-stream (a batch may be committed to the view but not
	// to Kafka): the next projector redelivers, the inbox skips.
	stop()
	tb.publish(t, s.events[half:]...)
	tb.projector(t, projection.Table, "order-read", nil, projection.Options{})
	s.requireConverged(t, tb, projection.Table, 20*time.Second)
}

func TestProjectorParksMalformedEventsAndKeepsGoing(t *testing.T) {
	t.Parallel()
	tb := setup(t)
	reg := prometheus.NewRegistry()
	tb.projector(t, projection.Table, "order-read", reg, projection.Options{})

	bad, good := newOrder("alice"), newOrder("bob")
	created := bad.created(t, 500)
	broken := bad.paid(t)
	broken.payload = []byte{0xff, 0xff, 0xff} // not protobuf
	behind := bad.refunded(t)                 // same payment aggregate: parked behind
	noEnvelope := good.confirmed(t)
	noEnvelope.id = uuid.New()
	msg := noEnvelope.message()
	msg.Headers = msg.Headers[1:] // no event id
	tb.publish(t, created, broken, behind, good.created(t, 700), good.paid(t))
	require.NoError(t, tb.writer.WriteMessages(context.Background(), msg))

	require.Eventually(t, func() bool {
		return events(t, reg, "parked") == 3
	}, 20*time.Second, 20*time.Millisecond)
	var parked []string
	rows, err := tb.pool.Query(context.Background(), `SELECT event_type || ': ' || error FROM inbox_parked WHERE consumer = 'order-read' ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		parked = append(parked, s)
	}
	require.NoError(t, rows.Err())
	require.Len(t, parked, 3)
	require.Contains(t, parked[0]+parked[1]+parked[2], "held behind parked event "+broken.id.String())

	// The order's own events and every other aggregate went on.
	require.Eventually(t, func() bool {
		v, ok := viewOf(t, tb.pool, projection.Table, bad.id)
		w, ok2 := viewOf(t, tb.pool, projection.Table, good.id)
		return ok && ok2 && v.Status == "PENDING" && v.Payment == "" && w.Payment == "CAPTURED"
	}, 20*time.Second, 20*time.Millisecond)
}

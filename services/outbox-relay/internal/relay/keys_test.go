package relay_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/servicetest"
	"github.com/goodgo/goodgo/services/outbox-relay/internal/relay"
)

// aggregateInLane returns a fresh aggregate id whose lane is lane.
func aggregateInLane(prefix string, lane int16) string {
	base := prefix + "-" + uuid.NewString()[:8] + "-"
	for i := 0; ; i++ {
		if id := base + strconv.Itoa(i); outbox.Lane(id) == lane {
			return id
		}
	}
}

// versionsOf lists the versions of agg received, in arrival order.
func versionsOf(msgs []received, agg string) []int64 {
	var out []int64
	for _, m := range msgs {
		if m.Aggregate == agg {
			out = append(out, m.Version)
		}
	}
	return out
}

// Key rotation: the writers already seal with a key (k2) that one relay
// replica does not hold yet. That replica parks nothing: it holds the
// lane at the event (later events of the lane wait behind it), retries,
// counts and logs it; a replica that holds k2 takes the lane over and
// publishes the event and those behind it, in order. A payload that fails
// authentication under a key the replica holds is still parked, and its
// aggregate goes on.
func TestRelayHoldsALaneWhoseKeyItLacks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url, pool := newOutboxDB(t)
	b := startBroker(t, broker.Config{})
	old := testKeys(t) // k1 only: the replica not rolled out yet
	rotated, err := keyring.New("k2", map[string][]byte{
		"k1": []byte("0123456789abcdef0123456789abcdef"),
		"k2": []byte("fedcba9876543210fedcba9876543210"),
	})
	require.NoError(t, err)
	sealsK2, err := outbox.NewWriter(rotated, nil)
	require.NoError(t, err)
	sealsK1, err := outbox.NewWriter(old, nil)
	require.NoError(t, err)

	// Three aggregates in three lanes. The held lane is below 16, so that
	// when the second replica joins, plain balancing (which hands over the
	// highest lanes) does not move it: only the hand-over for its key does.
	held := aggregateInLane("order-rotated", 3)
	corrupt := aggregateInLane("order-corrupt", 20)
	plain := aggregateInLane("order-plain", 25)
	pii := func(e outbox.Event) outbox.Event { e.PII = true; return e }
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, sealsK2.Append(ctx, tx, orderEvent(held, 1), pii(orderEvent(held, 2)), orderEvent(held, 3)))
	require.NoError(t, sealsK1.Append(ctx, tx, orderEvent(corrupt, 1), pii(orderEvent(corrupt, 2)), pii(orderEvent(corrupt, 3)), orderEvent(corrupt, 4)))
	require.NoError(t, sealsK1.Append(ctx, tx, orderEvent(plain, 1), orderEvent(plain, 2), orderEvent(plain, 3)))
	// A payload under k1 that fails authentication (corrupted at rest).
	_, err = tx.Exec(ctx, `UPDATE outbox SET payload = set_byte(payload, 20, get_byte(payload, 20) # 1)
		WHERE aggregate_id = $1 AND aggregate_version = 3`, corrupt)
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
	require.Equal(t, 1, countRows(t, pool, "key_id = 'k2'"))

	c := collect(t, b.Addr(), event.TopicOrder)
	logs := &servicetest.Logs{}
	first := startRelay(t, relayOpts{id: "without-k2", urls: []string{url}, brokers: []string{b.Addr()}, keys: old, logs: logs,
		cfg: relay.Config{BackoffMax: 200 * time.Millisecond}})

	// Alone, it publishes everything but the held lane's event and what
	// follows it in that lane, and parks only the corrupted payload.
	c.waitDistinct(t, 1+3+3, 15*time.Second)
	requireMetric(t, first.reg, 1, "outbox_lanes_held", map[string]string{"key_id": "k2"}, "the lane is held for k2")
	require.Eventually(t, func() bool {
		return metricValue(t, first.reg, "outbox_failed_events_total", map[string]string{"reason": "unknown_key"}) >= 3
	}, 10*time.Second, 10*time.Millisecond, "the held event is retried")
	require.Equal(t, []int64{1}, versionsOf(c.all(), held), "nothing of the held lane past the event")
	require.Equal(t, []int64{1, 2, 4}, versionsOf(c.all(), corrupt), "the aggregate of a corrupted payload goes on")
	require.Equal(t, 0, countRows(t, pool, "key_id = 'k2' AND parked_at IS NOT NULL"), "an unknown key id is not parked")
	require.Equal(t, 2, countRows(t, pool, "aggregate_id = '"+held+"' AND published_at IS NULL AND parked_at IS NULL"))
	require.Equal(t, 1, countRows(t, pool, "parked_at IS NOT NULL AND last_error LIKE 'decrypt:%'"), "a payload that fails authentication is parked")
	require.Equal(t, 1.0, metricValue(t, first.reg, "outbox_failed_events_total", map[string]string{"reason": "decrypt"}))
	require.Contains(t, logs.String(), `"key_id":"k2"`, "the log names the missing key")

	// A replica that holds k2 joins: the held lane moves to it.
	second := startRelay(t, relayOpts{id: "with-k2", urls: []string{url}, brokers: []string{b.Addr()}, keys: rotated})
	c.waitDistinct(t, 3+3+3, 15*time.Second)
	require.Equal(t, []int64{1, 2, 3}, versionsOf(c.all(), held), "the held event and those behind it, in order")
	require.Zero(t, requireOrderedPerAggregate(t, c.all()), "nothing published twice")
	requireMetric(t, first.reg, 0, "outbox_lanes_held", map[string]string{"key_id": "k2"})
	require.Equal(t, 1.0, metricValue(t, first.reg, "outbox_lane_handovers_total", map[string]string{"reason": "unknown_key"}))
	require.Eventually(t, func() bool {
		a, b := metricValue(t, first.reg, "outbox_lanes_owned", nil), metricValue(t, second.reg, "outbox_lanes_owned", nil)
		return a+b == outbox.Lanes && a >= outbox.Lanes/2-1
	}, 10*time.Second, 10*time.Millisecond, "the lanes are still shared out")
	require.Equal(t, 1, countRows(t, pool, "parked_at IS NOT NULL"))
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NULL AND parked_at IS NULL") == 0 },
		5*time.Second, 10*time.Millisecond)
	require.True(t, strings.Contains(logs.String(), "handing a held lane over"), "the hand-over is logged")
}

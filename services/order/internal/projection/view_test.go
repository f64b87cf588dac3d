package projection_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

func change(t *testing.T, e ev) projection.Change {
	t.Helper()
	c, err := projection.Decode(inbox.Event{ID: e.id, Type: e.typ, AggregateType: e.aggType, AggregateID: e.aggID,
		AggregateVersion: e.version, OccurredAt: e.at, Payload: e.payload})
	require.NoError(t, err)
	return c
}

func TestApply(t *testing.T) {
	t.Parallel()
	o := newOrder("alice")
	created, paid, confirmed := o.created(t, 900), o.paid(t), o.confirmed(t)
	refunded := o.refunded(t)

	t.Run("a payment read before order.created is merged into a hidden row", func(t *testing.T) {
		var v projection.View
		require.True(t, change(t, paid).Apply(&v))
		require.False(t, v.Visible())
		require.Equal(t, projection.PaymentCaptured, v.PaymentStatus)
		require.True(t, change(t, created).Apply(&v))
		require.True(t, v.Visible())
		require.Equal(t, projection.StatusPending, v.Status)
		require.Equal(t, projection.PaymentCaptured, v.PaymentStatus)
		require.Equal(t, created.at.Unix(), v.CreatedAt.Unix())
	})
	t.Run("an event not newer than its source's applied version changes nothing", func(t *testing.T) {
		var v projection.View
		for _, e := range []ev{created, paid, refunded, confirmed} {
			require.True(t, change(t, e).Apply(&v))
		}
		before := v
		require.False(t, change(t, paid).Apply(&v), "older payment event")
		require.False(t, change(t, created).Apply(&v), "redelivered order.created")
		require.Equal(t, before, v)
		require.Equal(t, projection.PaymentRefunded, v.PaymentStatus)
		require.Equal(t, "COMPLETED", v.SagaOutcome())
	})
	t.Run("payment and reservation events set their source's status, id and reason", func(t *testing.T) {
		o := newOrder("bob")
		var v projection.View
		// Each event replaces the reason of the one before: a capture or a
		// release, which give none, clears it.
		for _, tc := range []struct {
			e                  ev
			payment, stock, re string
		}{
			{o.declined(t), projection.PaymentDeclined, "", "card_declined"},
			{o.paid(t), projection.PaymentCaptured, "", ""},
			{o.refunded(t), projection.PaymentRefunded, "", "compensation"},
			{o.rejected(t), projection.PaymentRefunded, projection.StockRejected, "insufficient_stock"},
			{o.released(t), projection.PaymentRefunded, projection.StockReleased, ""},
			{o.reserved(t), projection.PaymentRefunded, projection.StockReserved, ""},
		} {
			require.True(t, change(t, tc.e).Apply(&v), tc.e.typ)
			require.Equal(t, tc.payment, v.PaymentStatus, tc.e.typ)
			require.Equal(t, tc.stock, v.InventoryStatus, tc.e.typ)
			if tc.e.topic == event.TopicPayment {
				require.Equal(t, o.payment, v.PaymentID, tc.e.typ)
				require.Equal(t, tc.re, v.PaymentReason, tc.e.typ)
			} else {
				require.Equal(t, o.reserve, v.ReservationID, tc.e.typ)
				require.Equal(t, tc.re, v.InventoryReason, tc.e.typ)
			}
		}
	})
	t.Run("malformed events are refused", func(t *testing.T) {
		bad := paid
		bad.payload = []byte{0xff}
		_, err := projection.Decode(inbox.Event{ID: bad.id, Type: bad.typ, AggregateVersion: 1, OccurredAt: time.Now(), Payload: bad.payload})
		require.ErrorIs(t, err, projection.ErrMalformed)
		_, err = projection.Decode(inbox.Event{ID: paid.id, Type: paid.typ, AggregateVersion: 0, OccurredAt: time.Now(), Payload: paid.payload})
		require.ErrorIs(t, err, projection.ErrMalformed)
	})
}

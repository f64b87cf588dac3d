package projection_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
	t.Run("malformed events are refused", func(t *testing.T) {
		bad := paid
		bad.payload = []byte{0xff}
		_, err := projection.Decode(inbox.Event{ID: bad.id, Type: bad.typ, AggregateVersion: 1, OccurredAt: time.Now(), Payload: bad.payload})
		require.ErrorIs(t, err, projection.ErrMalformed)
		_, err = projection.Decode(inbox.Event{ID: paid.id, Type: paid.typ, AggregateVersion: 0, OccurredAt: time.Now(), Payload: paid.payload})
		require.ErrorIs(t, err, projection.ErrMalformed)
	})
}

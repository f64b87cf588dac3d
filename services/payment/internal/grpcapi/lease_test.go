package grpcapi_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// A claim lost under a slow but live holder (servicetest.LostClaim): the
// first ProcessPayment waits inside its handler while its claim
// disappears, and the retry with the same key runs beside it. The database
// is the second line: one payment, one event, and both callers are
// answered with that payment.
func TestLostClaimStillPaysOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	order, key := newOrder(), newKey()
	redisKey := b.idemKeys + idempotency.Key(caller.Identity{Service: "orchestrator"}.Scope(),
		paymentv1.PaymentService_ProcessPayment_FullMethodName, key)

	p1, p2 := servicetest.LostClaim(t, b.pool, b.rdb, redisKey, "payments",
		func() (*paymentv1.ProcessPaymentResponse, metadata.MD, error) {
			var header metadata.MD
			resp, err := b.client.ProcessPayment(withKey(key), processReq(order, 700, "tok_visa"), grpc.Header(&header))
			return resp, header, err
		})
	require.Equal(t, paymentv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, p1.GetPayment().GetStatus())
	require.Equal(t, p1.GetPayment().GetPaymentId(), p2.GetPayment().GetPaymentId(), "both answered with the one payment")
	require.Equal(t, 1, paymentsOf(t, b, order), "charged once")
	require.Equal(t, []string{event.PaymentProcessed}, eventsOf(t, b, p1.GetPayment().GetPaymentId()))
}

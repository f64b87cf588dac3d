package main

import (
	"bufio"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcclient"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
)

// parkedAs returns a ParkedEventService client calling as user with roles.
func (b *bundle) parkedAs(user string, roles ...string) opsv1.ParkedEventServiceClient {
	return opsv1.NewParkedEventServiceClient(b.pki.Dial(b.addr, grpc.WithPerRPCCredentials(grpcclient.Bearer(b.pki.Token(user, roles...)))))
}

// TestOperatorsResolveParkedEvents: an order.created.v1 the saga cannot
// start (no items) is parked; an operator lists it, a replay fails again
// and leaves it parked, a discard resolves it with the operator's name and
// reason; customers are refused every RPC.
func TestOperatorsResolveParkedEvents(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	bad := order("tok_visa") // no items: never a saga
	badID := uuid.New()
	b.publish(t, badID, bad)
	good := order("tok_visa", "SKU-1")
	b.publish(t, uuid.New(), good)
	b.sagaOf(t, good.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)

	ops := b.parkedAs("ops-1", caller.RoleOperator)
	ctx := context.Background()
	var listed *opsv1.ListParkedEventsResponse
	require.Eventually(t, func() bool {
		var err error
		listed, err = ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{})
		require.NoError(t, err)
		return len(listed.GetEvents()) == 1
	}, 20*time.Second, 20*time.Millisecond)
	ev := listed.GetEvents()[0]
	require.Equal(t, badID.String(), ev.GetEventId())
	require.Equal(t, "orchestrator", ev.GetSource())
	require.Equal(t, bad.GetOrderId(), ev.GetAggregateId())
	require.Equal(t, int64(1), ev.GetAggregateVersion())
	require.Equal(t, opsv1.ParkedEventState_PARKED_EVENT_STATE_PARKED, ev.GetState())
	require.Contains(t, ev.GetError(), "no items")

	customer := b.parkedAs("alice")
	_, err := customer.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = customer.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: badID.String(), Reason: "mine"})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = customer.ReplayParkedEvent(keyed(), &opsv1.ReplayParkedEventRequest{EventId: badID.String()})
	require.Equal(t, codes.PermissionDenied, status.Code(err))

	_, err = ops.DiscardParkedEvent(ctx, &opsv1.DiscardParkedEventRequest{EventId: badID.String(), Reason: "x"})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "an idempotency key is required")
	_, err = ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: badID.String()})
	require.Equal(t, codes.InvalidArgument, status.Code(err), "a reason is required")
	_, err = ops.ReplayParkedEvent(keyed(), &opsv1.ReplayParkedEventRequest{EventId: uuid.NewString()})
	require.Equal(t, codes.NotFound, status.Code(err))

	replayed, err := ops.ReplayParkedEvent(keyed(), &opsv1.ReplayParkedEventRequest{EventId: badID.String(), Reason: "try again"})
	require.NoError(t, err)
	require.Len(t, replayed.GetResults(), 1)
	require.Equal(t, "failed", replayed.GetResults()[0].GetResult())
	require.Contains(t, replayed.GetResults()[0].GetError(), "no items")

	discarded, err := ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: badID.String(), Reason: "order has no items"})
	require.NoError(t, err)
	require.Equal(t, opsv1.ParkedEventState_PARKED_EVENT_STATE_DISCARDED, discarded.GetEvent().GetState())
	require.Equal(t, "ops-1", discarded.GetEvent().GetResolvedBy())
	_, err = ops.DiscardParkedEvent(keyed(), &opsv1.DiscardParkedEventRequest{EventId: badID.String(), Reason: "again"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))

	open, err := ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{})
	require.NoError(t, err)
	require.Empty(t, open.GetEvents())
	all, err := ops.ListParkedEvents(ctx, &opsv1.ListParkedEventsRequest{IncludeResolved: true})
	require.NoError(t, err)
	require.Len(t, all.GetEvents(), 1)
	require.Equal(t, "order has no items", all.GetEvents()[0].GetResolutionReason())
	require.Equal(t, int32(1), all.GetEvents()[0].GetAttempts(), "one failed replay")

	var audits []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "audit" {
			audits = append(audits, line)
		}
	}
	require.Len(t, audits, 4, "the unknown event, the failed replay, the discard, the second discard")
	for i, want := range [][2]string{{"inbox.replay", "refused"}, {"inbox.replay", "failed"}, {"inbox.discard", "ok"}, {"inbox.discard", "refused"}} {
		require.Equal(t, "ops-1", audits[i]["actor"])
		require.Equal(t, want[0], audits[i]["action"])
		require.Equal(t, want[1], audits[i]["outcome"])
	}
	require.Equal(t, badID.String(), audits[2]["event_id"])
	require.Equal(t, "order has no items", audits[2]["reason"])
}

package inbox_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// switchable is a handler whose failures the test turns on and off by
// payload: a permanent error parks the event, as a bug fixed later would.
type switchable struct {
	mu     sync.Mutex
	broken map[string]bool
}

func (s *switchable) set(body string, broken bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broken[body] = broken
}

func (s *switchable) handle(ctx context.Context, tx pgx.Tx, ev inbox.Event) error {
	s.mu.Lock()
	broken := s.broken[string(ev.Payload)]
	s.mu.Unlock()
	if broken {
		return inbox.Permanent(errors.New("cannot apply " + string(ev.Payload)))
	}
	return recordEffect(ctx, tx, ev)
}

func (b *bundle) admin(t *testing.T, h inbox.Handler, log *servicetest.Logs) *inbox.Admin {
	t.Helper()
	a, err := inbox.NewAdmin("projector", b.pool, h, inbox.AdminOptions{
		Keys: b.keys, Logger: slog.New(slog.NewJSONHandler(log, nil)), Registerer: b.reg,
	})
	require.NoError(t, err)
	return a
}

// appliedOrder returns the event ids of aggregate agg's effects in the
// order they were applied.
func (b *bundle) appliedOrder(t *testing.T, agg string) []uuid.UUID {
	t.Helper()
	rows, err := b.pool.Query(context.Background(), "SELECT event_id FROM effects WHERE aggregate_id = $1 ORDER BY seq", agg)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	return ids
}

func TestAdminReplaysAParkedEventThenThoseBehindItInOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := &switchable{broken: map[string]bool{"poison": true}}
	poison := newMsg("order-a", 1, "poison")
	behind1 := newMsg("order-a", 2, "behind-1")
	behind2 := newMsg("order-a", 3, "behind-2")
	other := newMsg("order-b", 1, "other")
	produce(t, b.addr, poison, behind1, other, behind2)
	b.run(t, h.handle, nil)
	b.waitProcessed(t, 4)
	require.Equal(t, 3.0, b.results(t, inbox.ResultParked))

	var log servicetest.Logs
	admin := b.admin(t, h.handle, &log)
	ctx := context.Background()

	// Out of order: the event behind is refused while the poison is parked.
	_, err := admin.Replay(ctx, behind1.id, "ops-1", "")
	require.ErrorIs(t, err, inbox.ErrParkedBehind)
	require.ErrorContains(t, err, poison.id.String())

	// Not fixed yet: the replay fails again and the event stays parked.
	res, err := admin.Replay(ctx, poison.id, "ops-1", "first try")
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, inbox.ResultFailed, res[0].Result)
	require.ErrorContains(t, res[0].Err, "cannot apply poison")
	page, err := admin.List(ctx, inbox.ListFilter{AggregateID: "order-a", AggregateType: "order", Limit: 10})
	require.NoError(t, err)
	require.Len(t, page, 3, "all still parked")
	require.Equal(t, poison.id, page[0].EventID)
	require.Equal(t, 1, page[0].ReplayAttempts)
	require.Contains(t, page[0].Error, "replay: ")
	require.Nil(t, page[0].ResolvedAt)
	require.Empty(t, b.appliedOrder(t, "order-a"))

	// Fixed, but the second event behind it now fails: the replay applies
	// the poison and the first behind it, in order, and stops there.
	h.set("poison", false)
	h.set("behind-2", true)
	res, err = admin.Replay(ctx, poison.id, "ops-1", "bug fixed")
	require.NoError(t, err)
	require.Len(t, res, 3)
	require.Equal(t, []string{inbox.ResultApplied, inbox.ResultApplied, inbox.ResultFailed},
		[]string{res[0].Result, res[1].Result, res[2].Result})
	require.Equal(t, []uuid.UUID{poison.id, behind1.id, behind2.id}, []uuid.UUID{res[0].EventID, res[1].EventID, res[2].EventID})
	require.Equal(t, []uuid.UUID{poison.id, behind1.id}, b.appliedOrder(t, "order-a"))

	_, err = admin.Replay(ctx, poison.id, "ops-1", "again")
	require.ErrorIs(t, err, inbox.ErrNotParked, "resolved events are not replayed twice")

	// A redelivery of a replayed event is a duplicate, never applied twice.
	produce(t, b.addr, behind1)
	b.waitProcessed(t, 5)
	require.Equal(t, 1.0, b.results(t, inbox.ResultDuplicate))
	require.Equal(t, 1, b.effects(t, behind1.id))

	h.set("behind-2", false)
	res, err = admin.Replay(ctx, behind2.id, "ops-2", "")
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, inbox.ResultApplied, res[0].Result)
	require.Equal(t, []uuid.UUID{poison.id, behind1.id, behind2.id}, b.appliedOrder(t, "order-a"))

	// Nothing parked for the aggregate any more: its next event applies.
	next := newMsg("order-a", 4, "next")
	produce(t, b.addr, next)
	b.waitProcessed(t, 6)
	require.Equal(t, []uuid.UUID{poison.id, behind1.id, behind2.id, next.id}, b.appliedOrder(t, "order-a"))

	all, err := admin.List(ctx, inbox.ListFilter{IncludeResolved: true, Limit: 10})
	require.NoError(t, err)
	require.Len(t, all, 3)
	for _, p := range all {
		require.NotNil(t, p.ResolvedAt)
		require.Equal(t, inbox.ResolutionReplayed, p.Resolution)
	}
	require.Equal(t, "ops-1", all[0].ResolvedBy)
	require.Equal(t, "bug fixed", all[0].ResolutionReason)
	require.Equal(t, "behind "+poison.id.String()+": bug fixed", all[1].ResolutionReason)
	require.Equal(t, "ops-2", all[2].ResolvedBy)
	require.Equal(t, int64(3), all[2].AggregateVersion)
	unresolved, err := admin.List(ctx, inbox.ListFilter{Limit: 10})
	require.NoError(t, err)
	require.Empty(t, unresolved)

	audits := log.All("audit")
	var outcomes []string
	for _, a := range audits {
		require.Equal(t, "inbox.replay", a["action"])
		outcomes = append(outcomes, a["outcome"].(string)+" "+a["actor"].(string))
	}
	require.Equal(t, []string{
		"refused ops-1", "failed ops-1", "ok ops-1", "ok ops-1", "failed ops-1", "refused ops-1", "ok ops-2",
	}, outcomes)
	require.Equal(t, 3.0, b.metric(t, "inbox_admin_actions_total", "action", "replay", "outcome", "ok"))
}

func TestAdminDiscardReleasesTheAggregate(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := &switchable{broken: map[string]bool{"poison": true}}
	poison := newMsg("order-s", 1, "poison")
	produce(t, b.addr, poison)
	b.run(t, h.handle, nil)
	b.waitProcessed(t, 1)

	var log servicetest.Logs
	admin := b.admin(t, h.handle, &log)
	// Discarded: the aggregate's next event applies, the discarded one
	// never.
	_, err := admin.Discard(context.Background(), poison.id, "ops-1", "superseded")
	require.NoError(t, err)
	later := newMsg("order-s", 2, "later")
	produce(t, b.addr, later)
	b.waitProcessed(t, 2)
	require.Equal(t, 1, b.effects(t, later.id))

	_, err = admin.Replay(context.Background(), poison.id, "ops-1", "")
	require.ErrorIs(t, err, inbox.ErrNotParked, "a discarded event is resolved")
}

func TestAdminDiscardsWithAReasonAndListsInPages(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := &switchable{broken: map[string]bool{"poison": true}}
	var msgs []msg
	for i := range 5 {
		msgs = append(msgs, newMsg("order-d"+string(rune('0'+i)), 1, "poison"))
	}
	behind := newMsg("order-d0", 2, "fine")
	produce(t, b.addr, append(msgs, behind)...)
	b.run(t, h.handle, nil)
	b.waitProcessed(t, 6)

	var log servicetest.Logs
	admin := b.admin(t, h.handle, &log)
	ctx := context.Background()

	var seen []uuid.UUID
	var after int64
	for range 3 {
		page, err := admin.List(ctx, inbox.ListFilter{After: after, Limit: 2})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), 2)
		for _, p := range page {
			seen = append(seen, p.EventID)
			after = p.ID
		}
	}
	require.Equal(t, []uuid.UUID{msgs[0].id, msgs[1].id, msgs[2].id, msgs[3].id, msgs[4].id, behind.id}, seen)
	byAgg, err := admin.List(ctx, inbox.ListFilter{AggregateType: "order", AggregateID: "order-d0", Limit: 10})
	require.NoError(t, err)
	require.Len(t, byAgg, 2)

	_, err = admin.Discard(ctx, msgs[0].id, "ops-1", "")
	require.ErrorIs(t, err, inbox.ErrReasonRequired)
	_, err = admin.Discard(ctx, uuid.New(), "ops-1", "typo")
	require.ErrorIs(t, err, inbox.ErrParkedNotFound)

	p, err := admin.Discard(ctx, msgs[0].id, "ops-1", "customer cancelled by phone")
	require.NoError(t, err)
	require.Equal(t, inbox.ResolutionDiscarded, p.Resolution)
	_, err = admin.Discard(ctx, msgs[0].id, "ops-1", "twice")
	require.ErrorIs(t, err, inbox.ErrNotParked)
	require.Zero(t, b.effects(t, msgs[0].id), "a discarded event is never applied")

	// The event behind it is released: replaying it applies it.
	res, err := admin.Replay(ctx, behind.id, "ops-1", "")
	require.NoError(t, err)
	require.Equal(t, inbox.ResultApplied, res[0].Result)
	require.Equal(t, 1, b.effects(t, behind.id))

	open, err := admin.List(ctx, inbox.ListFilter{Limit: 10})
	require.NoError(t, err)
	require.Len(t, open, 4)
	all, err := admin.List(ctx, inbox.ListFilter{IncludeResolved: true, Limit: 10})
	require.NoError(t, err)
	require.Len(t, all, 6)
	require.Equal(t, "customer cancelled by phone", all[0].ResolutionReason)
	require.Equal(t, "ops-1", all[0].ResolvedBy)

	var n int
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM inbox_parked WHERE resolution = 'discarded' AND resolved_by = 'ops-1'").Scan(&n))
	require.Equal(t, 1, n, "the discard is recorded durably")

	audits := log.All("audit")
	require.Len(t, audits, 5)
	require.Equal(t, "inbox.discard", audits[2]["action"])
	require.Equal(t, "ok", audits[2]["outcome"])
	require.Equal(t, msgs[0].id.String(), audits[2]["event_id"])
	require.Equal(t, "customer cancelled by phone", audits[2]["reason"])
	require.Equal(t, "projector", audits[2]["consumer"])
	require.Equal(t, 1.0, b.metric(t, "inbox_admin_actions_total", "action", "discard", "outcome", "ok"))
	require.Equal(t, 3.0, b.metric(t, "inbox_admin_actions_total", "action", "discard", "outcome", "refused"))
}

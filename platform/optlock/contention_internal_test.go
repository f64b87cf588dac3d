package optlock

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// fakeClock is a settable clock for Contention.now.
type fakeClock struct{ t time.Time }

func (f *fakeClock) now() time.Time          { return f.t }
func (f *fakeClock) advance(d time.Duration) { f.t = f.t.Add(d) }
func newFakeClock() *fakeClock               { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }
func update(c *Contention, key string, conflicted bool) {
	t := c.Start(key)
	t.Observe(conflicted)
	t.Done()
}

func newTestContention(t *testing.T, opts ContentionOptions) (*Contention, *fakeClock, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	c, err := NewContention("product", opts, reg)
	require.NoError(t, err)
	clock := newFakeClock()
	c.now = clock.now
	return c, clock, reg
}

func switches(t *testing.T, c *Contention) (toPessimistic, toOptimistic float64) {
	t.Helper()
	return testutil.ToFloat64(c.toPessimistic), testutil.ToFloat64(c.toOptimistic)
}

func TestContentionSwitchesAboveThresholdAndBackWhenItCools(t *testing.T) {
	c, clock, _ := newTestContention(t, ContentionOptions{MinUpdates: 8})

	// Every update conflicts, but a handful is not evidence yet.
	for range 7 {
		update(c, "HOT", true)
		require.False(t, c.Pessimistic("HOT"), "fewer than MinUpdates updates")
	}
	update(c, "HOT", true)
	require.True(t, c.Pessimistic("HOT"), "8 conflicted updates of 8")
	require.Equal(t, 1.0, testutil.ToFloat64(c.pessimisticKeys))
	up, down := switches(t, c)
	require.Equal(t, [2]float64{1, 0}, [2]float64{up, down})

	// Still busy: clean updates alone do not switch it back at once (the
	// gap between Threshold and Cool).
	for range 5 {
		update(c, "HOT", false)
	}
	require.True(t, c.Pessimistic("HOT"), "8 collisions of 13 recent updates")

	// It cools: a few half-lives later the old collisions weigh little,
	// and the next clean update brings the key back.
	clock.advance(10 * time.Second)
	update(c, "HOT", false)
	require.False(t, c.Pessimistic("HOT"))
	require.Equal(t, 0.0, testutil.ToFloat64(c.pessimisticKeys))
	up, down = switches(t, c)
	require.Equal(t, [2]float64{1, 1}, [2]float64{up, down})
}

func TestContentionStaysOptimisticBelowThreshold(t *testing.T) {
	c, clock, _ := newTestContention(t, ContentionOptions{})
	for i := range 200 {
		update(c, "WARM", i%20 == 0) // 5 % of updates conflict
		clock.advance(10 * time.Millisecond)
		require.False(t, c.Pessimistic("WARM"), "update %d", i)
	}
	up, _ := switches(t, c)
	require.Zero(t, up)
}

func TestContentionCountsOverlapAsCollision(t *testing.T) {
	c, _, _ := newTestContention(t, ContentionOptions{MinUpdates: 2})
	// Two updates of one key in flight at once: the second would have
	// raced the first even though neither reports a conflict (on the
	// pessimistic path nothing does).
	for range 2 {
		first, second := c.Start("K"), c.Start("K")
		require.False(t, first.overlapped)
		require.True(t, second.overlapped)
		second.Observe(false)
		second.Done()
		first.Observe(false)
		first.Done()
	}
	require.True(t, c.Pessimistic("K"), "2 collisions of 4 updates")

	// Updates of other keys do not overlap each other.
	a, b := c.Start("A"), c.Start("B")
	require.False(t, a.overlapped || b.overlapped)
	a.Observe(false)
	b.Observe(false)
	a.Done()
	b.Done()
}

func TestContentionKeepsAtMostMaxKeysIdle(t *testing.T) {
	c, _, _ := newTestContention(t, ContentionOptions{MaxKeys: 8, MinUpdates: 1})
	// A hot key, in flight while the stream of new keys passes.
	for range 4 {
		update(c, "HOT", true)
	}
	require.True(t, c.Pessimistic("HOT"))
	inFlight := c.Start("BUSY")
	for i := range 100 {
		update(c, fmt.Sprintf("SKU-%03d", i), false)
		require.LessOrEqual(t, len(c.keys), 8)
	}
	require.True(t, c.Pessimistic("HOT"), "optimistic keys are forgotten first")
	inFlight.Observe(false) // must find its entry: keys in flight are never evicted
	inFlight.Done()
	require.Contains(t, c.keys, "BUSY")

	// With nothing but pessimistic keys idle, those go too: the bound holds.
	for i := range 20 {
		key := fmt.Sprintf("HOT-%02d", i)
		update(c, key, true)
	}
	require.LessOrEqual(t, len(c.keys), 8)
	require.Equal(t, float64(countPessimistic(c)), testutil.ToFloat64(c.pessimisticKeys),
		"the gauge follows evictions")
}

func countPessimistic(c *Contention) int {
	n := 0
	for _, k := range c.keys {
		if k.pessimistic {
			n++
		}
	}
	return n
}

func TestContentionUpdatePicksThePath(t *testing.T) {
	c, _, reg := newTestContention(t, ContentionOptions{MinUpdates: 2})
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	policy := Policy{MaxAttempts: 3}
	var optimistic, pessimistic int
	// The optimistic path conflicts once per update, then wins.
	conflictOnce := func(context.Context) error {
		optimistic++
		if optimistic%2 == 1 {
			return fmt.Errorf("stale: %w", ErrConflict)
		}
		return nil
	}
	atomic := func(context.Context) error { pessimistic++; return nil }

	require.NoError(t, c.Update(t.Context(), "K", policy, m, conflictOnce, atomic))
	require.Equal(t, 2, optimistic, "a conflict, then a win")
	require.Zero(t, pessimistic)
	require.True(t, c.Pessimistic("K"), "one conflict in two attempts")

	require.NoError(t, c.Update(t.Context(), "K", policy, m, conflictOnce, atomic))
	require.Equal(t, 1, pessimistic, "a hot key takes the pessimistic path")
	require.Equal(t, 2, optimistic)
	require.Equal(t, 2.0, testutil.ToFloat64(m.forAggregate("product").attempts), "pessimistic writes are not version-checked attempts")

	errBroken := errors.New("broken")
	require.ErrorIs(t, c.Update(t.Context(), "K", policy, m, conflictOnce,
		func(context.Context) error { return errBroken }), errBroken, "errors come back unchanged")
}

func TestContentionUpdateStopsRetryingWhenTheKeyTurnsHot(t *testing.T) {
	c, _, reg := newTestContention(t, ContentionOptions{MinUpdates: 3})
	m, err := NewMetrics(reg)
	require.NoError(t, err)
	var optimistic, pessimistic int
	alwaysStale := func(context.Context) error { optimistic++; return ErrConflict }
	atomic := func(context.Context) error { pessimistic++; return nil }

	require.NoError(t, c.Update(t.Context(), "K", Policy{MaxAttempts: 100}, m, alwaysStale, atomic))
	require.Equal(t, 3, optimistic, "retried until MinUpdates conflicted attempts turned the key hot")
	require.Equal(t, 1, pessimistic, "then written pessimistically, not given up")
}

func TestContentionsShareARegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	a, err := NewContention("product", ContentionOptions{MinUpdates: 1}, reg)
	require.NoError(t, err)
	b, err := NewContention("order", ContentionOptions{}, reg)
	require.NoError(t, err)
	update(a, "HOT", true)
	require.True(t, a.Pessimistic("HOT"))
	require.False(t, b.Pessimistic("HOT"), "each aggregate type has its own keys")
	n, err := testutil.GatherAndCount(reg, "optlock_pessimistic_keys")
	require.NoError(t, err)
	require.Equal(t, 2, n, "one series per aggregate")
}

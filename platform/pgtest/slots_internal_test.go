package pgtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestSlotsLimitConcurrentTests(t *testing.T) {
	t.Parallel()
	p := newSlotPool(2)
	releaseA, err := p.acquire("TestA", time.Second)
	require.NoError(t, err)
	releaseB, err := p.acquire("TestB", time.Second)
	require.NoError(t, err)

	// A third test waits for a free slot.
	acquiredC := make(chan func(), 1)
	go func() {
		release, err := p.acquire("TestC", time.Minute)
		if err == nil {
			acquiredC <- release
		}
	}()
	select {
	case <-acquiredC:
		t.Fatal("a third test got a slot while both were taken")
	case <-time.After(200 * time.Millisecond):
	}

	// A test holding a slot, and its subtests, never wait: they would be
	// waiting for themselves.
	for _, name := range []string{"TestA", "TestA/sub", "TestA/sub/deeper"} {
		release, err := p.acquire(name, 10*time.Millisecond)
		require.NoError(t, err, name)
		release()
	}
	// A test whose name merely starts alike is another test.
	_, err = p.acquire("TestAB", 50*time.Millisecond)
	require.ErrorContains(t, err, "PGTEST_MAX_DATABASES")
	require.ErrorContains(t, err, "TestAB waited 50ms for one of the 2 test database slots")

	releaseA()
	var releaseC func()
	select {
	case releaseC = <-acquiredC:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting test did not get the freed slot")
	}
	// TestA's slot is gone: a new database of TestA waits like any other.
	_, err = p.acquire("TestA/sub", 50*time.Millisecond)
	require.Error(t, err)

	releaseB()
	releaseC()
	require.Empty(t, p.held)
	require.Zero(t, len(p.sem))
}

func TestNewDatabaseHoldsASlotUntilTheTestEnds(t *testing.T) {
	t.Parallel()
	slots, err := testSlots()
	require.NoError(t, err)
	held := func(name string) int {
		slots.mu.Lock()
		defer slots.mu.Unlock()
		return slots.held[name]
	}

	var name string
	t.Run("uses two databases", func(t *testing.T) {
		name = t.Name()
		_, pool := NewDatabase(t, nil)
		require.EqualValues(t, DefaultMaxConns, pool.Config().MaxConns)
		require.Equal(t, 1, held(name))
		_, sized := NewDatabase(t, nil, WithMaxConns(2))
		require.EqualValues(t, 2, sized.Config().MaxConns)
		require.Equal(t, 1, held(name), "the second database rides on the test's slot")
	})
	require.Zero(t, held(name), "released when the test ended")
}

func TestMaxDatabasesFromEnvironment(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]int{"": DefaultMaxDatabases, "1": 1, "32": 32} {
		n, err := maxDatabases(v)
		require.NoError(t, err, v)
		require.Equal(t, want, n, v)
	}
	for _, v := range []string{"0", "-1", "many", "2.5"} {
		_, err := maxDatabases(v)
		require.ErrorContains(t, err, "PGTEST_MAX_DATABASES", v)
	}
}

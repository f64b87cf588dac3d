package warm_test

import (
	"bytes"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/internal/warm"
)

// goroutineID reads the running goroutine's id from its stack header
// ("goroutine 17 [running]:"), to tell goroutines apart.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	return string(bytes.Fields(buf)[1])
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, time.Millisecond, msg)
}

func TestAFunctionAfterAnotherRunsOnTheSameGoroutine(t *testing.T) {
	p := warm.New(time.Minute)
	ids := make(chan string, 2)
	p.Go(func() { ids <- goroutineID() })
	first := <-ids
	eventually(t, func() bool { return p.Idle() == 1 }, "the goroutine waits for more work")
	p.Go(func() { ids <- goroutineID() })
	require.Equal(t, first, <-ids)
	eventually(t, func() bool { return p.Idle() == 1 }, "and waits again")
}

func TestConcurrentFunctionsEachGetAGoroutine(t *testing.T) {
	p := warm.New(time.Minute)
	const n = 8
	var started, release sync.WaitGroup
	started.Add(n)
	release.Add(1)
	ids := make(chan string, n)
	for range n {
		p.Go(func() {
			ids <- goroutineID()
			started.Done()
			release.Wait() // all n run at once: none waits for another
		})
	}
	started.Wait()
	release.Done()
	seen := map[string]bool{}
	for range n {
		seen[<-ids] = true
	}
	require.Len(t, seen, n)
	eventually(t, func() bool { return p.Idle() == n }, "all of them wait for more work")
}

func TestAnIdleGoroutineEndsAfterLinger(t *testing.T) {
	p := warm.New(20 * time.Millisecond)
	done := make(chan struct{})
	p.Go(func() { close(done) })
	<-done
	eventually(t, func() bool { return p.Idle() == 1 }, "the goroutine waits for more work")
	eventually(t, func() bool { return p.Idle() == 0 }, "then ends after lingering")
	// The pool still works once every goroutine has ended.
	again := make(chan struct{})
	p.Go(func() { close(again) })
	<-again
}

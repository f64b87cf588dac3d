//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled reports whether the binary was built with failpoints.
const Enabled = true

// point is one armed failpoint: the process dies on hit number at.
type point struct {
	at   int64
	hits int64
}

var (
	mu     sync.Mutex
	points map[string]*point
	once   sync.Once
)

// Parse reads a GOODGO_FAILPOINTS value: name=N,… with N ≥ 1.
func Parse(s string) (map[string]int64, error) {
	out := map[string]int64{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, n, ok := strings.Cut(part, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s: %q is not name=N", Env, part)
		}
		at, err := strconv.ParseInt(n, 10, 64)
		if err != nil || at < 1 {
			return nil, fmt.Errorf("%s: %q: N must be a positive integer", Env, part)
		}
		out[name] = at
	}
	return out, nil
}

func load() {
	armed, err := Parse(os.Getenv(Env))
	if err != nil {
		// A mistyped point would silently test nothing: refuse to run.
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	points = map[string]*point{}
	for name, at := range armed {
		points[name] = &point{at: at}
	}
}

// Hit counts a pass through the point name and, on the armed pass, kills
// the process with SIGKILL.
func Hit(name string) {
	once.Do(load)
	mu.Lock()
	p := points[name]
	if p == nil {
		mu.Unlock()
		return
	}
	p.hits++
	fire := p.hits == p.at
	mu.Unlock()
	if fire {
		fmt.Fprintf(os.Stderr, "failpoint %s: SIGKILL on hit %d\n", name, p.at)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is delivered asynchronously: go no further
	}
}

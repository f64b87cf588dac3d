// Package lifecycle is the part of every GoodGo binary that is not about the
// binary: read the configuration, run until SIGINT or SIGTERM, exit with a
// code that tells an orchestrator what happened, and serve several servers
// as one.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
)

// Exit codes of Main.
const (
	ExitConfig = 2 // a setting is missing or malformed: fix the environment
	ExitRun    = 1 // start-up failed or a server stopped on its own
)

// Lookup reads one environment variable (os.LookupEnv in production).
type Lookup = func(string) (string, bool)

// Main loads the configuration with load and runs it with run until SIGINT
// or SIGTERM. A bad configuration prints one "config: NAME: problem" line per
// problem to stderr and exits with ExitConfig; a run error prints one line
// and exits with ExitRun; a clean stop returns normally (exit 0). run gets
// stdout for its JSON logs and the lookup for the standard OTEL_* variables.
func Main[C any](name string, load func(Lookup) (C, error), run func(context.Context, C, io.Writer, Lookup) error) {
	os.Exit(runMain(name, load, run, os.LookupEnv, os.Stdout, os.Stderr))
}

func runMain[C any](name string, load func(Lookup) (C, error), run func(context.Context, C, io.Writer, Lookup) error,
	lookup Lookup, stdout, stderr io.Writer,
) int {
	cfg, err := load(lookup)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "config: "+line)
		}
		return ExitConfig
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, stdout, lookup); err != nil {
		fmt.Fprintln(stderr, name+": "+err.Error())
		return ExitRun
	}
	return 0
}

// Serve runs every serve function until ctx is cancelled or one of them
// returns; then it cancels the others and waits for all of them. One server
// stopping stops the binary, so a process never limps on half-alive. It
// returns the errors of those that failed.
func Serve(ctx context.Context, serves ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, serve := range serves {
		wg.Go(func() {
			defer cancel()
			if err := serve(ctx); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

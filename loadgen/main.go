// Command loadgen places orders through GoodGo's public gRPC API, at a
// rate or a concurrency, for a duration or a count, in a mix of kinds,
// follows each to its terminal state and prints a summary (a table, or
// JSON with -json). See README.md.
//
//	loadgen -rate 20 -duration 15s -mix good=70,decline=10,oos=10,hot=10 -retry-fraction 0.1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/goodgo/goodgo/loadgen/generator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command: 0 when every order ended as its kind is owed
// and every client retry returned the same order, 1 when not, 2 for bad
// flags or a setup that cannot run.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: "+err.Error())
		return 2
	}
	cfg, closeConns, err := opts.setup(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: "+err.Error())
		return 2
	}
	defer closeConns()

	// Live progress goes to a terminal only: stdout, or stderr when stdout
	// carries the JSON.
	live, liveOut := stdout, isTerminal(stdout)
	if opts.json {
		live, liveOut = stderr, isTerminal(stderr)
	}
	var bar *progress
	if liveOut && !opts.quiet {
		bar = newProgress(live, cfg.Count, cfg.Duration)
		cfg.Progress = bar.update
	}

	s, err := generator.Run(ctx, cfg)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: "+err.Error())
		return 2
	}
	if opts.json {
		err = writeJSON(stdout, s)
	} else {
		err = writeTable(stdout, s)
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadgen: "+err.Error())
		return 2
	}
	if s.Unexpected > 0 || s.Retries.Different > 0 {
		return 1
	}
	return 0
}

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
	"maps"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
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
//
// The binary's first argument may name one of commands (`order migrate`),
// which then runs instead of the server, with the same exit codes; "help"
// lists them, and ConfigCommand checks the configuration without serving. Any other argument prints the usage and exits with ExitConfig.
//
// Unless GOGC is set, the garbage collector runs at DefaultGCPercent.
func Main[C any](name string, load func(Lookup) (C, error), run func(context.Context, C, io.Writer, Lookup) error, commands ...Command) {
	DefaultGC(os.LookupEnv)
	os.Exit(dispatch(name, os.Args[1:], load, run, commands, os.LookupEnv, os.Stdout, os.Stderr))
}

// DefaultGCPercent is the garbage collector's target (GOGC) of every
// binary whose environment does not set GOGC. The binaries keep small live
// heaps and allocate per request, so at Go's 100 they collect many times a
// second. At 400 the whole saga ran about a fifth more sagas per second on
// the same two cores (docs/benchmarks.md, "Two settings tried"), for a
// heap up to five times the live one. GOMEMLIMIT, set in the Kubernetes manifests below the
// container's memory limit, makes the collector work harder before the
// heap could reach that limit.
const DefaultGCPercent = 400

// DefaultGC sets the garbage collector's target to DefaultGCPercent unless
// lookup finds GOGC (which the runtime has applied already, "off"
// included). It reports whether it set it.
func DefaultGC(lookup Lookup) bool {
	if _, set := lookup("GOGC"); set {
		return false
	}
	debug.SetGCPercent(DefaultGCPercent)
	return true
}

// Command is a subcommand of a binary, such as migrate: a one-off task that
// reads its own configuration (often less than the server's) and exits.
type Command struct {
	// Name is the argument that selects the command.
	Name string
	// Summary says in a few words what it does, for the usage.
	Summary string
	main    func(binary string, lookup Lookup, stdout, stderr io.Writer) int
}

// NewCommand returns the command name, which loads its configuration with
// load and runs run once (until it returns, or SIGINT or SIGTERM cancels
// its context), with Main's exit codes.
func NewCommand[C any](name, summary string, load func(Lookup) (C, error), run func(context.Context, C, io.Writer, Lookup) error) Command {
	return Command{Name: name, Summary: summary, main: func(binary string, lookup Lookup, stdout, stderr io.Writer) int {
		return runMain(binary+" "+name, load, run, lookup, stdout, stderr)
	}}
}

// Run runs the command as `binary <name>` would, returning the exit code.
func (c Command) Run(binary string, lookup Lookup, stdout, stderr io.Writer) int {
	return c.main(binary, lookup, stdout, stderr)
}

// dispatch runs the server, or the command args name.
func dispatch[C any](name string, args []string, load func(Lookup) (C, error), run func(context.Context, C, io.Writer, Lookup) error,
	commands []Command, lookup Lookup, stdout, stderr io.Writer,
) int {
	if len(args) == 0 {
		return runMain(name, load, run, lookup, stdout, stderr)
	}
	if len(args) == 1 {
		for _, c := range commands {
			if args[0] == c.Name {
				return c.Run(name, lookup, stdout, stderr)
			}
		}
		if args[0] == ConfigCommand {
			return checkConfig(load, lookup, stdout, stderr)
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			usage(stdout, name, commands)
			return 0
		}
	}
	fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", name, args)
	usage(stderr, name, commands)
	return ExitConfig
}

// ConfigCommand is the command every binary of Main has: `order config`
// loads the server's configuration as serving would, prints the names of
// the environment variables it read, one a line and sorted, and exits 0,
// or ExitConfig with one "config: NAME: problem" line per problem. A
// deployment's environment can so be checked without starting anything
// (deploy/docker's compose test runs it), and a variable the list lacks is
// one the binary ignores. The standard OTEL_* variables are read later, by
// the OpenTelemetry SDK, and are not listed.
const ConfigCommand = "config"

// checkConfig runs ConfigCommand.
func checkConfig[C any](load func(Lookup) (C, error), lookup Lookup, stdout, stderr io.Writer) int {
	read := map[string]bool{}
	_, err := load(func(k string) (string, bool) {
		read[k] = true
		return lookup(k)
	})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(stderr, "config: "+line)
		}
		return ExitConfig
	}
	for _, k := range slices.Sorted(maps.Keys(read)) {
		fmt.Fprintln(stdout, k)
	}
	return 0
}

func usage(w io.Writer, name string, commands []Command) {
	fmt.Fprintf(w, "usage: %s [command]\n\nWithout a command, %s serves until SIGINT or SIGTERM; its settings are environment variables.\n", name, name)
	fmt.Fprintln(w, "\ncommands:")
	fmt.Fprintf(w, "  %-10s %s\n", ConfigCommand, "check the settings and list the variables read, without serving")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
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

// Command benchreport runs the repository's benchmarks with pinned flags
// (`make bench`), keeps their raw output, takes the median of every metric
// over the -count runs and sets the medians beside the seed's "Performance
// Characteristics" table: printed, and written between the markers of
// docs/benchmarks.md.
//
// Usage, from the repository root:
//
//	GOWORK=off go run ./tools/benchreport [flags]
//
// Flags default from the environment: -count from BENCH_COUNT (5), -only
// from BENCH_ONLY, -benchtime from BENCH_BENCHTIME. The benchmarks run in
// the repository's go.work workspace whatever GOWORK this command has.
// The exit status is 1 when a suite failed; a suite whose optional
// benchmark does not exist yet is reported as not run and does not fail.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Environ(), os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

// errUsage reports a command line that makes no sense, after the usage.
var errUsage = errors.New("usage")

// errSuitesFailed reports a run in which some suite failed, after the
// report was printed.
var errSuitesFailed = errors.New("some benchmark suites failed")

func run(ctx context.Context, args []string, getenv func(string) string, environment []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defCount := 5
	if v := getenv("BENCH_COUNT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("BENCH_COUNT=%q: want a positive integer", v)
		}
		defCount = n
	}
	var (
		root      = fs.String("root", ".", "repository root")
		count     = fs.Int("count", defCount, "runs per benchmark (go test -count); default $BENCH_COUNT or 5")
		only      = fs.String("only", getenv("BENCH_ONLY"), "run only the suites whose ID matches this regexp; docs are not updated then")
		benchtime = fs.String("benchtime", getenv("BENCH_BENCHTIME"), "per-suite -benchtime overrides, ID=VALUE,… (e.g. e2e=50x)")
		outDir    = fs.String("out", "bin/bench", "raw output directory, relative to -root")
		doc       = fs.String("md", "docs/benchmarks.md", "Markdown file to update between its bench markers, relative to -root; empty: none")
		render    = fs.Bool("render", false, "run nothing: report again from the raw output of the last run in -out")
		list      = fs.Bool("list", false, "print the suites and their commands, run nothing")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *count < 1 {
		fs.Usage()
		return errUsage
	}
	absRoot, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	out := filepath.Join(absRoot, *outDir)
	overrides, err := parseOverrides(*benchtime)
	if err != nil {
		return err
	}
	selected := suites
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			return fmt.Errorf("-only: %w", err)
		}
		selected = nil
		for _, s := range suites {
			if re.MatchString(s.ID) {
				selected = append(selected, s)
			}
		}
		if len(selected) == 0 {
			return fmt.Errorf("-only %q matches no suite", *only)
		}
	}
	env := environ(environment)
	r := &runner{root: absRoot, outDir: out, count: *count, procs: runtime.GOMAXPROCS(0),
		benchtime: overrides, env: env, progress: stderr}

	if *list {
		for _, s := range selected {
			fmt.Fprintf(stdout, "%-15s %s\n", s.ID, r.command(s))
		}
		return nil
	}

	var rep Report
	if *render {
		if rep, err = loadReport(out); err != nil {
			return err
		}
	} else {
		if err := os.MkdirAll(out, 0o750); err != nil {
			return err
		}
		rep.Only = *only
		rep.Machine = machine(ctx, absRoot, env)
		rep.Machine.Count = *count
		rep.Machine.Start = time.Now()
		for i, s := range selected {
			fmt.Fprintf(stderr, "[%d/%d] %s: %s\n", i+1, len(selected), s.ID, r.command(s))
			sr := r.run(ctx, s)
			fmt.Fprintf(stderr, "[%d/%d] %s: %s in %s%s\n", i+1, len(selected), s.ID, sr.Status, fmtDuration(sr.Seconds), reasonSuffix(sr))
			rep.Suites = append(rep.Suites, sr)
			rep.Machine.Seconds = time.Since(rep.Machine.Start).Seconds()
			rep.Machine.LoadEnd = loadAverage()
			if err := saveReport(out, rep); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}

	fmt.Fprintln(stdout)
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	switch {
	case *doc == "":
	case rep.Only != "":
		fmt.Fprintf(stdout, "\n%s not updated: the run was of a subset (-only %s).\n", *doc, rep.Only)
	default:
		if err := updateDoc(filepath.Join(absRoot, *doc), rep.Markdown()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nUpdated %s.\n", *doc)
	}
	for _, s := range rep.Suites {
		if s.Status == statusFailed {
			return errSuitesFailed
		}
	}
	return nil
}

// parseOverrides parses "ID=VALUE,ID=VALUE".
func parseOverrides(s string) (map[string]string, error) {
	m := map[string]string{}
	for kv := range strings.SplitSeq(s, ",") {
		if kv = strings.TrimSpace(kv); kv == "" {
			continue
		}
		id, v, ok := strings.Cut(kv, "=")
		if !ok || id == "" || v == "" {
			return nil, fmt.Errorf("-benchtime %q: want ID=VALUE", kv)
		}
		known := false
		for _, su := range suites {
			known = known || su.ID == id
		}
		if !known {
			return nil, fmt.Errorf("-benchtime: no suite %q", id)
		}
		m[id] = v
	}
	return m, nil
}

const reportFile = "run.json"

// saveReport records the run (without the parsed results, which -render
// takes from the raw output again) beside the raw output.
func saveReport(dir string, rep Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, reportFile), b, 0o600)
}

// loadReport reads the last run back and parses its raw output again.
func loadReport(dir string) (Report, error) {
	var rep Report
	b, err := os.ReadFile(filepath.Join(dir, reportFile)) //nolint:gosec // G304: the directory is the operator's -out flag
	if err != nil {
		return rep, fmt.Errorf("no run to render: %w", err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("%s: %w", reportFile, err)
	}
	for i := range rep.Suites {
		s := &rep.Suites[i]
		if s.Status == statusNotRun {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, s.Suite.ID+".txt")) //nolint:gosec // G304: the directory is the operator's -out flag
		if err != nil {
			return rep, err
		}
		out, err := Parse(bytes.NewReader(raw), rep.Machine.GOMAXPROCS)
		if err != nil {
			return rep, err
		}
		s.Benchmarks, s.Failed = Summarize(out.Results), out.Failed
		// Judged again, in case the parser learned something since.
		var exit error
		if s.Exit != "" {
			exit = errors.New(s.Exit)
		}
		s.Status, s.Reason = judge(exit, out, raw)
	}
	return rep, nil
}

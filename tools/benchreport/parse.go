package main

import (
	"bufio"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Metric is one value/unit pair of a benchmark result line ("1234 checks/s").
type Metric struct {
	Unit  string
	Value float64
}

// Result is one result line of `go test -bench` output: one run of one
// benchmark (of the -count runs).
type Result struct {
	// Name is the benchmark's full name without the GOMAXPROCS suffix
	// ("BenchmarkCheck/replay", not "BenchmarkCheck/replay-2").
	Name string
	// Iterations is b.N of the run.
	Iterations int64
	// Metrics are in the order the line gives them.
	Metrics []Metric
}

// Output is what Parse found in one `go test -bench` output.
type Output struct {
	Results []Result
	// Failed are the failed runs, once each. go test exits with status 0
	// when only runs after the first of a -count fail: these are the only
	// trace of such failures.
	Failed []Failure
}

// Failure is one "--- FAIL" of a benchmark.
type Failure struct {
	// Name is the benchmark's name without the GOMAXPROCS suffix.
	Name string
	// Message is the first line the failure printed under it (the
	// b.Error or b.Fatal message; for a testify assertion, its "Error:"
	// text), "" if none.
	Message string
}

// Parse reads `go test -bench` output (without -v, stdout and stderr
// together) and returns its result lines. procs is the GOMAXPROCS the
// benchmarks ran with: go test appends "-procs" to every name when it is
// above 1, and only that suffix is stripped ("contended-4-2" becomes
// "contended-4"; with procs 1 a name is kept as printed).
//
// Without -v, go test prints a benchmark's name before running it and its
// figures after, so anything the code under test writes meanwhile (a log
// line on stderr) lands between the two: after the name on its line, or on
// lines of its own before the figures. Parse therefore remembers a name
// whose line carries no figures and gives it the next line that consists of
// figures only. Lines that are neither are ignored.
func Parse(r io.Reader, procs int) (Output, error) {
	var (
		out Output
		p   = newParser(procs)
		br  = bufio.NewReaderSize(r, 64*1024)
	)
	for {
		line, err := br.ReadString('\n')
		if line != "" {
			if res, ok := p.line(line); ok {
				out.Results = append(out.Results, res)
			}
		}
		if errors.Is(err, io.EOF) {
			out.Failed = p.failed
			return out, nil
		}
		if err != nil {
			out.Failed = p.failed
			return out, err
		}
	}
}

// parser is Parse's state between lines.
type parser struct {
	procs   int
	pending string // a name printed without its figures yet
	failed  []Failure
	// message is where the indented lines under the last failure are in
	// giving its message.
	message messageState
	// lastFail is the benchmark of the last failure, until a result or
	// another benchmark's name.
	lastFail string
}

func newParser(procs int) *parser { return &parser{procs: procs} }

// line takes the next line of output and returns the result it completes.
func (p *parser) line(line string) (Result, bool) {
	line = strings.TrimRight(line, "\r\n")
	fields := strings.Fields(line)
	if p.message != msgNone && len(fields) > 0 {
		if line[0] == ' ' || line[0] == '\t' {
			p.failureLine(line)
			return Result{}, false
		}
		p.message = msgNone
	}
	switch {
	case len(fields) == 0:
	case strings.Contains(line, "--- FAIL: Benchmark"):
		_, after, _ := strings.Cut(line, "--- FAIL: ")
		f := strings.Fields(after)
		if len(f) == 0 {
			break
		}
		name := stripProcs(f[0], p.procs)
		// A run after the first (-count) that fails is reported twice: as
		// "BenchmarkX-2 \t--- FAIL: BenchmarkX" (its name, then the failure
		// instead of figures) and at once again as "--- FAIL: BenchmarkX-2".
		if !strings.HasPrefix(fields[0], "Benchmark") && p.lastFail == name {
			p.lastFail = ""
			break
		}
		p.failed = append(p.failed, Failure{Name: name})
		p.message, p.lastFail, p.pending = msgFirst, name, ""
	case strings.HasPrefix(fields[0], "Benchmark"):
		name := stripProcs(fields[0], p.procs)
		p.lastFail = ""
		if n, ms, ok := parseFigures(fields[1:]); ok {
			p.pending = ""
			return Result{Name: name, Iterations: n, Metrics: ms}, true
		}
		p.pending = name
	case p.pending != "":
		if n, ms, ok := parseFigures(fields); ok {
			name := p.pending
			p.pending = ""
			return Result{Name: name, Iterations: n, Metrics: ms}, true
		}
	}
	return Result{}, false
}

// parseFigures parses "N v1 u1 v2 u2 …": an iteration count and at least
// one value/unit pair. ok is false for anything else.
func parseFigures(f []string) (n int64, ms []Metric, ok bool) {
	if len(f) < 3 || len(f)%2 == 0 {
		return 0, nil, false
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || n < 0 {
		return 0, nil, false
	}
	for i := 1; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return 0, nil, false
		}
		// A unit is never a number; "3 4 5" is not a result line.
		if _, err := strconv.ParseFloat(f[i+1], 64); err == nil {
			return 0, nil, false
		}
		ms = append(ms, Metric{Unit: f[i+1], Value: v})
	}
	return n, ms, true
}

// stripProcs removes the "-procs" suffix go test adds when procs > 1.
func stripProcs(name string, procs int) string {
	if procs <= 1 {
		return name
	}
	return strings.TrimSuffix(name, "-"+strconv.Itoa(procs))
}

// messageState follows the indented lines under a "--- FAIL".
type messageState int

const (
	msgNone          messageState = iota
	msgFirst                      // the next line is the message
	msgAfterLocation              // "x_test.go:12:" alone: the message follows
	msgTestify                    // in a testify report: waiting for "Error:"
	msgContinue                   // after "Error:": a continuation line may follow
)

// testifyContinuation is a line of a testify report that continues the
// labelled line above it: an empty label column between two tabs.
var testifyContinuation = regexp.MustCompile(`^ *\t +\t`)

// bareLocation is a t.Error line with nothing after the location, as
// testify's assertions print before their report.
var bareLocation = regexp.MustCompile(`^\S+\.go:\d+:$`)

// failureLine takes an indented line under the last failure.
func (p *parser) failureLine(raw string) {
	f := &p.failed[len(p.failed)-1]
	l := strings.TrimSpace(raw)
	switch p.message {
	case msgFirst, msgAfterLocation:
		if p.message == msgAfterLocation && !strings.HasPrefix(l, "Error Trace:") {
			f.Message += " " + l
			p.message = msgNone
			break
		}
		f.Message = l
		switch {
		case strings.HasPrefix(l, "Error Trace:"):
			p.message = msgTestify
		case bareLocation.MatchString(l) && p.message == msgFirst:
			p.message = msgAfterLocation
		default:
			p.message = msgNone
		}
	case msgTestify:
		if rest, ok := strings.CutPrefix(l, "Error:"); ok {
			f.Message = strings.TrimSpace(rest)
			p.message = msgContinue
		}
	case msgContinue:
		if testifyContinuation.MatchString(raw) {
			f.Message += " " + l
		}
		p.message = msgNone
	}
}

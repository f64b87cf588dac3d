package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// runner runs suites with pinned flags and keeps their raw output.
type runner struct {
	root   string // repository root
	outDir string // raw output directory
	count  int
	procs  int // GOMAXPROCS of the benchmarks, for Parse
	// benchtime overrides Suite.Benchtime by suite ID.
	benchtime map[string]string
	// env is the benchmarks' environment: ours without GOWORK, so that the
	// modules build in the repository's go.work workspace even when this
	// tool itself was started with GOWORK=off.
	env      []string
	progress io.Writer
}

// args returns the go test arguments of s.
func (r *runner) args(s Suite) []string {
	bt := s.Benchtime
	if v, ok := r.benchtime[s.ID]; ok {
		bt = v
	}
	return []string{"test", "-run", "^$", "-bench", s.Bench, "-benchtime", bt,
		"-count", strconv.Itoa(r.count), "-timeout", s.Timeout, s.Pkg}
}

// command is the shell form of s's command, from the repository root.
func (r *runner) command(s Suite) string {
	q := make([]string, 0, len(r.args(s)))
	for _, a := range r.args(s) {
		q = append(q, shellQuote(a))
	}
	return "cd " + shellQuote(s.Dir) + " && go " + strings.Join(q, " ")
}

var shellSafe = regexp.MustCompile(`^[A-Za-z0-9_./=:,+-]+$`)

func shellQuote(s string) string {
	if shellSafe.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run runs one suite; its raw output goes to <outDir>/<ID>.txt.
func (r *runner) run(ctx context.Context, s Suite) SuiteRun {
	start := time.Now()
	raw := filepath.Join(r.outDir, s.ID+".txt")
	sr := SuiteRun{Suite: s, Command: r.command(s), Raw: r.rel(raw)}
	finish := func(status, reason string) SuiteRun {
		sr.Status, sr.Reason, sr.Seconds = status, reason, time.Since(start).Seconds()
		return sr
	}

	if s.Optional != "" {
		// go test -list builds the package and lists its benchmarks
		// without running them (the package has no TestMain).
		var out bytes.Buffer
		err := r.goCmd(ctx, s.Dir, &out, "test", "-run", "^$", "-list", "^"+regexp.QuoteMeta(s.Optional)+"$", s.Pkg)
		if werr := os.WriteFile(raw, out.Bytes(), 0o600); werr != nil {
			return finish(statusFailed, werr.Error())
		}
		if err != nil {
			sr.Exit = err.Error()
			return finish(statusFailed, "listing benchmarks: "+firstProblem(out.Bytes(), err))
		}
		if !hasLine(out.Bytes(), s.Optional) {
			return finish(statusNotRun, s.Optional+" does not exist yet")
		}
	}

	f, err := os.OpenFile(raw, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600) //nolint:gosec // G304: under the operator's -out flag
	if err != nil {
		return finish(statusFailed, err.Error())
	}
	defer f.Close()
	var all bytes.Buffer
	live := &liveWriter{p: newParser(r.procs), w: r.progress}
	err = r.goCmd(ctx, s.Dir, io.MultiWriter(f, &all, live), r.args(s)...)
	if cerr := f.Close(); cerr != nil && err == nil {
		err = cerr
	}
	out, perr := Parse(bytes.NewReader(all.Bytes()), r.procs)
	if perr != nil && err == nil {
		err = perr
	}
	sr.Benchmarks, sr.Failed = Summarize(out.Results), out.Failed
	if err != nil {
		sr.Exit = err.Error()
	}
	return finish(judge(err, out, all.Bytes()))
}

// judge decides a suite's status from go test's error, the parsed output
// and the raw output.
func judge(err error, out Output, raw []byte) (status, reason string) {
	switch {
	case len(out.Failed) > 0:
		// Even when go test passed: it does when only runs after the
		// first of a -count fail. The leaves fail first; their parents
		// then fail without a message.
		f := out.Failed[0]
		return statusFailed, fmt.Sprintf("%d failures; first %s: %s", len(out.Failed), f.Name, shorten(f.Message))
	case err != nil:
		return statusFailed, firstProblem(raw, err)
	case len(out.Results) == 0:
		return statusFailed, "no benchmark results: -bench matched nothing?"
	}
	return statusOK, ""
}

func (r *runner) rel(p string) string {
	if rel, err := filepath.Rel(r.root, p); err == nil && !strings.HasPrefix(rel, "..") {
		return rel
	}
	return p
}

// goCmd runs the go command in dir (relative to the root), writing its
// stdout and stderr to w. The command gets a process group of its own so
// that cancelling ctx (an interrupt) kills the test binary it started too.
func (r *runner) goCmd(ctx context.Context, dir string, w io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...) //nolint:gosec // G204: the arguments come from the suite table, not from input
	cmd.Dir = filepath.Join(r.root, dir)
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	return cmd.Run()
}

// firstProblem explains a failed go command whose output has no parsed
// benchmark failure: its first panic (a -timeout is one), else its first
// compiler error, else its first FAIL line, else err.
func firstProblem(out []byte, err error) string {
	var compile, fail string
	for l := range strings.Lines(string(out)) {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "panic:"):
			return shorten(l)
		case compile == "" && compilerError.MatchString(l):
			compile = l
		case fail == "" && strings.HasPrefix(l, "FAIL"):
			fail = l
		}
	}
	for _, l := range []string{compile, fail} {
		if l != "" {
			return shorten(l)
		}
	}
	return err.Error()
}

// compilerError is a line of the compiler's or vet's complaints.
var compilerError = regexp.MustCompile(`\.go:\d+:\d+: `)

func hasLine(out []byte, want string) bool {
	for l := range strings.Lines(string(out)) {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

// liveWriter echoes benchmark result lines as they arrive, for a human
// watching a long run.
type liveWriter struct {
	p    *parser
	w    io.Writer
	part []byte
}

func (l *liveWriter) Write(b []byte) (int, error) {
	if l.w == nil {
		return len(b), nil
	}
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		if res, ok := l.p.line(string(l.part[:i])); ok {
			var ms []string
			for _, m := range res.Metrics {
				ms = append(ms, fmtNum(m.Value)+" "+m.Unit)
			}
			fmt.Fprintf(l.w, "    %s  %s\n", res.Name, strings.Join(ms, "  "))
		}
		l.part = l.part[i+1:]
	}
	return len(b), nil
}

// machine describes this machine and checkout (best effort: a missing
// figure reads "unknown").
func machine(ctx context.Context, root string, env []string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), Model: "unknown", Commit: "unknown",
		GoVersion: "unknown", LoadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = kb / (1 << 20)
			}
		}
	}
	output := func(name string, args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // G204: fixed commands (go env, git)
		cmd.Dir, cmd.Env = root, env
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	if v, err := output("go", "env", "GOVERSION", "GOOS", "GOARCH"); err == nil {
		m.GoVersion = strings.Join(strings.Fields(v), " ")
	}
	if v, err := output("git", "rev-parse", "--short", "HEAD"); err == nil {
		m.Commit = v
	}
	if v, err := output("git", "status", "--porcelain"); err == nil {
		m.Dirty = v != ""
	}
	return m
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// environ returns env without GOWORK.
func environ(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, "GOWORK=") {
			out = append(out, kv)
		}
	}
	return out
}

// shorten cuts a message for the suite list.
func shorten(s string) string { return cut(s, 200) }

// cut returns s, cut to n runes.
func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n]) + "…"
	}
	return s
}

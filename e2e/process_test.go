package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Services are the five binaries, by directory under services/.
var Services = []string{"inventory", "payment", "order", "orchestrator", "outbox-relay"}

// build is one compiled set of the five binaries.
type build struct {
	once sync.Once
	dir  string
	err  error
}

// variant is one way of compiling the binaries.
type variant struct {
	// race: with the race detector (tests) or without (benchmarks, whose
	// figures -race would distort tenfold).
	race bool
	// failpoints: with the build tag failpoints (platform/failpoint), in a
	// directory of its own: the crash matrix arms them by environment.
	failpoints bool
}

// builds holds the variants, each built at most once per test process.
var builds = map[variant]*build{{race: true}: {}, {race: false}: {}, {race: true, failpoints: true}: {}}

// TestMain removes the binaries built for the run.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range builds {
		if b.dir != "" {
			_ = os.RemoveAll(b.dir)
		}
	}
	os.Exit(code)
}

// buildBinaries compiles every service once per test process, with -race.
func buildBinaries(t testing.TB) string { return buildVariant(t, true) }

// buildVariant compiles every service once per test process, with or
// without the race detector, into a temporary directory that TestMain
// removes (the binaries are reused by every test of the run).
func buildVariant(t testing.TB, race bool) string {
	t.Helper()
	return buildWith(t, variant{race: race})
}

// buildWith is buildVariant for any variant.
func buildWith(t testing.TB, v variant) string {
	t.Helper()
	b := builds[v]
	require.NotNil(t, b, "no build variant %+v", v)
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "goodgo-e2e-bin-")
		if b.err != nil {
			return
		}
		args := []string{"build"}
		if v.race {
			args = append(args, "-race")
		}
		if v.failpoints {
			args = append(args, "-tags", "failpoints")
		}
		for _, s := range Services {
			cmd := exec.Command("go", append(args, "-o", filepath.Join(b.dir, s), "github.com/goodgo/goodgo/services/"+s)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("build %s: %w\n%s", s, err, out)
				return
			}
		}
	})
	require.NoError(t, b.err)
	return b.dir
}

// Process is one running binary with its JSON log lines.
type Process struct {
	Name    string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
	mu      sync.Mutex
	// logLines are the first maxParsedLines lines, decoded: the start-up
	// lines LogValue looks for. Later lines are kept only as text, so a
	// long benchmark does not spend the test process's CPU on JSON.
	logLines []map[string]any
	lines    int
	rawLog   strings.Builder
	rawTail  []string // the lines after maxRawBytes, last maxTailLines of them
}

const (
	maxParsedLines = 500
	maxRawBytes    = 1 << 20
	maxTailLines   = 2000
)

// Start runs a race-detector build of binary name with env added to this
// process's environment. The process is killed at cleanup if the test did
// not stop it; its log is printed when the test failed.
func Start(t testing.TB, name string, env map[string]string) *Process {
	t.Helper()
	return StartBinary(t, buildBinaries(t), name, env)
}

// StartBinary is Start with the binary taken from dir (see buildVariant).
func StartBinary(t testing.TB, dir, name string, env map[string]string) *Process {
	t.Helper()
	cmd := exec.Command(filepath.Join(dir, name))
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	return startProcess(t, name, cmd, false)
}

// startProcess starts cmd, keeping its output as the Process's log. At
// cleanup a process still running is killed — after a SIGTERM and up to
// 10 s to exit when graceful — and its log printed when the test failed.
func startProcess(t testing.TB, name string, cmd *exec.Cmd, graceful bool) *Process {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	require.NoError(t, cmd.Start())
	go p.readLog(stdout)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			if graceful {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				if _, err := p.Wait(10 * time.Second); err == nil {
					break
				}
			}
			_ = cmd.Process.Signal(syscall.SIGCONT) // a stopped process is killed too, but say so
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() || os.Getenv("E2E_LOGS") != "" {
			t.Logf("%s (pid %d) log:\n%s", name, cmd.Process.Pid, p.Log())
		}
	})
	return p
}

func (p *Process) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.lines++
		if p.rawLog.Len() < maxRawBytes {
			p.rawLog.WriteString(line + "\n")
		} else {
			p.rawTail = append(p.rawTail, line)
			if len(p.rawTail) > 2*maxTailLines {
				p.rawTail = append(p.rawTail[:0], p.rawTail[len(p.rawTail)-maxTailLines:]...)
			}
		}
		if p.lines <= maxParsedLines {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil {
				p.logLines = append(p.logLines, m)
			}
		}
		p.mu.Unlock()
	}
	p.exitErr = p.cmd.Wait()
	close(p.done)
}

// Log returns what the process printed: the first MiB and the last lines.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.rawTail) == 0 {
		return p.rawLog.String()
	}
	tail := p.rawTail
	if len(tail) > maxTailLines {
		tail = tail[len(tail)-maxTailLines:]
	}
	return p.rawLog.String() + "[… lines skipped …]\n" + strings.Join(tail, "\n") + "\n"
}

// Pid is the operating system's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogValue waits until a JSON log line with msg appears and returns its
// attribute key; it fails the test if the process exits first.
func (p *Process) LogValue(t testing.TB, msg, key string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		for _, m := range p.logLines {
			if m["msg"] == msg {
				v, _ := m[key].(string)
				p.mu.Unlock()
				return v
			}
		}
		p.mu.Unlock()
		select {
		case <-p.done:
			t.Fatalf("%s exited before logging %q: %v\n%s", p.Name, msg, p.exitErr, p.Log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s\n%s", p.Name, msg, timeout, p.Log())
		}
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

// Wait waits up to timeout for the process to exit and returns its exit
// code, or -1 and an error when it is still running.
func (p *Process) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s still running after %s", p.Name, timeout)
	}
}

// waitCtx is a helper for polling loops bounded by the test's own deadline.
func waitCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

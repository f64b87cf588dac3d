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

var (
	buildOnce sync.Once
	binDir    string
	errBuild  error
)

// buildBinaries compiles every service once per test process.
func buildBinaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, errBuild = os.MkdirTemp("", "goodgo-e2e-bin-")
		if errBuild != nil {
			return
		}
		for _, s := range Services {
			cmd := exec.Command("go", "build", "-race", "-o", filepath.Join(binDir, s), "github.com/goodgo/goodgo/services/"+s)
			if out, err := cmd.CombinedOutput(); err != nil {
				errBuild = fmt.Errorf("build %s: %w\n%s", s, err, out)
				return
			}
		}
	})
	require.NoError(t, errBuild)
	return binDir
}

// Process is one running binary with its JSON log lines.
type Process struct {
	Name     string
	cmd      *exec.Cmd
	done     chan struct{}
	exitErr  error
	mu       sync.Mutex
	logLines []map[string]any
	rawLog   strings.Builder
}

// Start runs a built binary with env added to this process's environment.
// The process is killed at cleanup if the test did not stop it.
func Start(t *testing.T, name string, env map[string]string) *Process {
	t.Helper()
	cmd := exec.Command(filepath.Join(buildBinaries(t), name))
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
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
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, p.Log())
		}
	})
	return p
}

func (p *Process) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		var m map[string]any
		p.mu.Lock()
		p.rawLog.WriteString(line + "\n")
		if json.Unmarshal([]byte(line), &m) == nil {
			p.logLines = append(p.logLines, m)
		}
		p.mu.Unlock()
	}
	p.exitErr = p.cmd.Wait()
	close(p.done)
}

// Log returns everything the process printed so far.
func (p *Process) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rawLog.String()
}

// LogValue waits until a JSON log line with msg appears and returns its
// attribute key; it fails the test if the process exits first.
func (p *Process) LogValue(t *testing.T, msg, key string, timeout time.Duration) string {
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
func waitCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

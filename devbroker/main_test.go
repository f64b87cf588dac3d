package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/devbroker/internal/kafkatest"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/stretchr/testify/require"
)

// TestBinary builds the real binary and drives it as a developer or a test
// harness would: start it on port 0, learn the port from its "listening"
// line, produce and consume over TCP, stop it with a signal.
func TestBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	require.NoError(t, err, "the go command is needed to build the binary")
	bin := filepath.Join(t.TempDir(), "devbroker")
	build := exec.CommandContext(t.Context(), goBin, "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	t.Run("SIGTERM after produce and consume", func(t *testing.T) {
		t.Parallel()
		p := startBinary(t, bin, "KAFKA_ADDR=127.0.0.1:0")
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()

		require.Equal(t, map[string]int{event.TopicOrder: 6, event.TopicPayment: 6, event.TopicInventory: 6},
			kafkatest.PartitionCounts(ctx, t, p.addr))

		sent := kafkatest.Messages([]string{"order-a", "order-b", "order-c"}, 0, 3)
		w := kafkatest.NewWriter(p.addr, event.TopicPayment)
		kafkatest.WriteEach(ctx, t, w, sent)
		require.NoError(t, w.Close())

		r := kafkatest.NewGroupReader(p.addr, event.TopicPayment, "test-binary")
		got := kafkatest.FetchN(ctx, t, r, len(sent))
		require.NoError(t, r.CommitMessages(ctx, got...))
		require.NoError(t, r.Close())
		recv := kafkatest.RequireSame(t, sent, got)
		for k, seqs := range kafkatest.SeqsByKey(recv) {
			require.Equal(t, []int{0, 1, 2}, seqs, "order of key %s", k)
		}

		p.stop(t, syscall.SIGTERM)
	})

	t.Run("SIGINT with flags", func(t *testing.T) {
		t.Parallel()
		p := startBinary(t, bin, "KAFKA_ADDR=127.0.0.1:9", "-addr=127.0.0.1:0", "-topics=x,y", "-partitions=2")
		require.Equal(t, map[string]int{"x": 2, "y": 2}, kafkatest.PartitionCounts(t.Context(), t, p.addr))
		p.stop(t, syscall.SIGINT)
	})

	t.Run("bad setting exits 2 naming it", func(t *testing.T) {
		t.Parallel()
		cmd := exec.CommandContext(t.Context(), bin)
		cmd.Env = append(os.Environ(), "KAFKA_PARTITIONS=many")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit)
		require.Equal(t, 2, exit.ExitCode())
		require.Contains(t, string(out), "KAFKA_PARTITIONS")
	})
}

// process is a running devbroker binary.
type process struct {
	cmd   *exec.Cmd
	addr  string
	lines chan map[string]any // stdout JSON lines after "listening"; closed at EOF
}

// startBinary starts bin with env added to the environment (entries with
// "=") or as arguments (the rest), and waits for its "listening" line.
func startBinary(t *testing.T, bin string, envOrArgs ...string) *process {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = os.Environ()
	for _, a := range envOrArgs {
		if strings.HasPrefix(a, "-") {
			cmd.Args = append(cmd.Args, a)
		} else {
			cmd.Env = append(cmd.Env, a)
		}
	}
	cmd.Env = append(cmd.Env, "LOG_LEVEL=info")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = &testWriter{t: t}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		// Only if the test failed before stop: don't leave it running.
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})

	p := &process{cmd: cmd, lines: make(chan map[string]any, 100)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				m = map[string]any{"unparsed": sc.Text()}
			}
			p.lines <- m
		}
	}()

	deadline := time.After(10 * time.Second)
	for p.addr == "" {
		select {
		case m, ok := <-p.lines:
			require.True(t, ok, "binary exited before logging its address")
			if m["msg"] == "listening" {
				addr, _ := m["addr"].(string)
				_, port, err := net.SplitHostPort(addr)
				require.NoError(t, err, "listening addr %q", addr)
				require.NotEqual(t, "0", port, "the real port, not the requested 0")
				p.addr = addr
			}
		case <-deadline:
			t.Fatal("no listening line within 10s")
		}
	}
	return p
}

// stop sends sig and requires a clean exit (status 0, "stopped" logged)
// within 5 s.
func (p *process) stop(t *testing.T, sig os.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
	var msgs []any
	deadline := time.After(5 * time.Second)
	// stdout reaches EOF when the process exits.
	for eof := false; !eof; {
		select {
		case m, ok := <-p.lines:
			if ok {
				msgs = append(msgs, m["msg"])
			}
			eof = !ok
		case <-deadline:
			t.Fatalf("still running 5s after %v; logged %v", sig, msgs)
		}
	}
	require.NoError(t, p.cmd.Wait(), "exit status after %v", sig)
	require.Equal(t, 0, p.cmd.ProcessState.ExitCode())
	require.Contains(t, msgs, "shutting down")
	require.Contains(t, msgs, "stopped")
}

// testWriter forwards the binary's stderr to the test log.
type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Logf("devbroker stderr: %s", p)
	return len(p), nil
}

func TestLoad(t *testing.T) {
	t.Parallel()
	env := func(kv ...string) func(string) (string, bool) {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}

	t.Run("defaults", func(t *testing.T) {
		cfg, err := load(nil, env(), io.Discard)
		require.NoError(t, err)
		require.Equal(t, Config{
			Broker: broker.Config{
				Addr:       "127.0.0.1:9092",
				Topics:     []string{event.TopicOrder, event.TopicPayment, event.TopicInventory},
				Partitions: 6,
			},
			LogLevel: slog.LevelInfo,
		}, cfg)
	})

	t.Run("environment", func(t *testing.T) {
		cfg, err := load(nil, env(
			"KAFKA_ADDR", "0.0.0.0:19092",
			"KAFKA_ADVERTISED_ADDR", "devbroker:19092",
			"KAFKA_TOPICS", " a , b,,",
			"KAFKA_PARTITIONS", "3",
			"KAFKA_AUTO_CREATE_TOPICS", "true",
			"LOG_LEVEL", "DEBUG",
		), io.Discard)
		require.NoError(t, err)
		require.Equal(t, Config{
			Broker: broker.Config{
				Addr:             "0.0.0.0:19092",
				AdvertisedAddr:   "devbroker:19092",
				Topics:           []string{"a", "b"},
				Partitions:       3,
				AutoCreateTopics: true,
			},
			LogLevel: slog.LevelDebug,
		}, cfg)
	})

	t.Run("flags override the environment", func(t *testing.T) {
		cfg, err := load([]string{"-addr", ":0", "-topics", "c", "-partitions", "1", "-log-level", "warn"},
			env("KAFKA_ADDR", "127.0.0.1:1", "KAFKA_TOPICS", "a", "KAFKA_PARTITIONS", "9"), io.Discard)
		require.NoError(t, err)
		require.Equal(t, ":0", cfg.Broker.Addr)
		require.Equal(t, []string{"c"}, cfg.Broker.Topics)
		require.Equal(t, int32(1), cfg.Broker.Partitions)
		require.Equal(t, slog.LevelWarn, cfg.LogLevel)
	})

	t.Run("errors name the setting", func(t *testing.T) {
		tests := []struct {
			args []string
			env  []string
			want []string
		}{
			{env: []string{"KAFKA_ADDR", "nohost", "KAFKA_PARTITIONS", "x", "LOG_LEVEL", "loud"},
				want: []string{"KAFKA_ADDR", "KAFKA_PARTITIONS", "LOG_LEVEL"}},
			{env: []string{"KAFKA_AUTO_CREATE_TOPICS", "perhaps"}, want: []string{"KAFKA_AUTO_CREATE_TOPICS"}},
			{args: []string{"-partitions", "0"}, want: []string{"KAFKA_PARTITIONS", "got 0"}},
			{args: []string{"-topics", " , "}, want: []string{"KAFKA_TOPICS"}},
			{args: []string{"-topics", "bad/topic"}, want: []string{`topic "bad/topic"`}},
			{args: []string{"-log-level", "loud"}, want: []string{"LOG_LEVEL"}},
			{args: []string{"-advertised-addr", "0.0.0.0:9092"}, want: []string{"advertised addr"}},
			{args: []string{"-nope"}, want: []string{"-nope"}},
			{args: []string{"extra"}, want: []string{"unexpected arguments"}},
		}
		for _, tt := range tests {
			_, err := load(tt.args, env(tt.env...), io.Discard)
			require.Error(t, err, "args %v env %v", tt.args, tt.env)
			for _, w := range tt.want {
				require.ErrorContains(t, err, w, "args %v env %v", tt.args, tt.env)
			}
		}
	})
}

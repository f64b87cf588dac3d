package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// redisServer is a Redis server of one environment (envOptions.privateRedis)
// on a port of 127.0.0.1 that it keeps across Stop and Start, with no
// persistence: started again, it is empty, as a Redis restarted without
// its data is.
type redisServer struct {
	tb   testing.TB
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// startRedis starts redis-server (Debian's redis-server package, which the
// machines that run the suite have) and stops it when tb ends.
func startRedis(tb testing.TB) *redisServer {
	tb.Helper()
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(tb, l.Close())
	r := &redisServer{tb: tb, port: port}
	r.Start()
	tb.Cleanup(func() {
		if r.cmd != nil {
			r.Stop()
		}
	})
	return r
}

// URL is the server's URL for REDIS_URL.
func (r *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", r.port) }

// Start runs the server, empty, and waits until it answers PING.
func (r *redisServer) Start() {
	r.tb.Helper()
	path, err := exec.LookPath("redis-server")
	require.NoError(r.tb, err, "the private Redis needs redis-server")
	r.cmd = exec.Command(path, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	require.NoError(r.tb, r.cmd.Start())
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	ok := poll(10*time.Second, 10*time.Millisecond, func() bool {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(context.Background(), "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)))
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return false
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && line == "+PONG\r\n"
	})
	require.True(r.tb, ok, "redis-server on port %d did not answer PING within 10s", r.port)
}

// Stop kills the server (SIGKILL: its data is gone) and waits until it is.
func (r *redisServer) Stop() {
	r.tb.Helper()
	require.NoError(r.tb, r.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		r.tb.Fatalf("redis-server (pid %d) still running 10s after SIGKILL", r.cmd.Process.Pid)
	}
	r.cmd = nil
}

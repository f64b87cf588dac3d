package tcpproxy_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/tcpproxy"
)

// echo serves one line back per connection until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	return tcpproxy.Serve(t, func(c net.Conn) {
		defer c.Close()
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil {
			_, _ = c.Write([]byte(line))
		}
	}).Addr().String()
}

func roundTrip(addr string) (string, net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr)
	if err != nil {
		return "", nil, err
	}
	if _, err := c.Write([]byte("hello\n")); err != nil {
		return "", c, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return line, c, err
}

// requireForwards requires a round trip through addr to come back.
func requireForwards(t *testing.T, addr string, msgAndArgs ...any) {
	t.Helper()
	line, c, err := roundTrip(addr)
	require.NoError(t, err)
	_ = c.Close()
	require.Equal(t, "hello\n", line, msgAndArgs...)
}

func TestCutRefusesAndDropsRestoreForwardsAgain(t *testing.T) {
	p := tcpproxy.Start(t, echo(t))

	line, open, err := roundTrip(p.Addr())
	require.NoError(t, err)
	require.Equal(t, "hello\n", line)
	defer open.Close()

	p.Cut()
	_, _, err = roundTrip(p.Addr())
	require.ErrorIs(t, err, syscall.ECONNREFUSED, "new connections are refused")
	_, err = open.Read(make([]byte, 1))
	require.Error(t, err, "open connections are dropped")

	p.Restore()
	requireForwards(t, p.Addr(), "same address, forwarding again")
}

func TestResetDropsOpenConnectionsAndKeepsAccepting(t *testing.T) {
	p := tcpproxy.Start(t, echo(t))
	c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	// The pair is tracked once the proxy dialled upstream: wait for a byte
	// to make the round trip before resetting.
	_, err = c.Write([]byte("x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return p.Open() == 1 }, 5*time.Second, 5*time.Millisecond)

	p.Reset()
	_, err = c.Read(make([]byte, 1))
	require.ErrorIs(t, err, syscall.ECONNRESET, "the open connection is reset, not closed")

	requireForwards(t, p.Addr(), "new connections still pass")
}

func TestLatencyHoldsEachChunk(t *testing.T) {
	p := tcpproxy.Start(t, echo(t))
	p.Latency(150 * time.Millisecond)
	start := time.Now()
	requireForwards(t, p.Addr())
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "held once each way")

	p.Latency(0)
	start = time.Now()
	requireForwards(t, p.Addr())
	require.Less(t, time.Since(start), 300*time.Millisecond, "latency ended")
}

func TestStallHoldsBytesUntilUnstall(t *testing.T) {
	p := tcpproxy.Start(t, echo(t))
	p.Stall()
	c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.Addr())
	require.NoError(t, err, "the handshake completes, as in a partition that drops packets")
	defer c.Close()
	_, err = c.Write([]byte("hello\n"))
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout(), "nothing comes back while stalled: %v", err)

	p.Unstall()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "hello\n", line, "what was sent during the stall arrives after it")
}

func TestLatencyDoesNotAddUpAlongAStream(t *testing.T) {
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	const chunks = 5
	arrived := make(chan time.Time, chunks)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for range chunks {
			if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
				return
			}
			arrived <- time.Now()
		}
	}()
	p := tcpproxy.Start(t, ln.Addr().String())
	const latency = 200 * time.Millisecond
	p.Latency(latency)
	c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	var sent []time.Time
	for range chunks { // one byte every 100 ms, each its own chunk
		sent = append(sent, time.Now())
		_, err := c.Write([]byte("x"))
		require.NoError(t, err)
		time.Sleep(100 * time.Millisecond)
	}
	for i := range chunks {
		select {
		case at := <-arrived:
			delay := at.Sub(sent[i])
			require.GreaterOrEqual(t, delay, latency, "chunk %d", i)
			// Held one after the other, the fifth would wait 600 ms.
			require.Less(t, delay, latency+100*time.Millisecond, "chunk %d is held from its arrival, not after the one before it", i)
		case <-time.After(5 * time.Second):
			t.Fatalf("chunk %d never arrived", i)
		}
	}
}

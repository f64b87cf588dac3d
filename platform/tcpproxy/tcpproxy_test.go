package tcpproxy_test

import (
	"bufio"
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/tcpproxy"
)

// echo serves one line back per connection until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err == nil {
					_, _ = c.Write([]byte(line))
				}
			}()
		}
	}()
	return ln.Addr().String()
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
	line, c, err := roundTrip(p.Addr())
	require.NoError(t, err)
	require.Equal(t, "hello\n", line, "same address, forwarding again")
	_ = c.Close()
}

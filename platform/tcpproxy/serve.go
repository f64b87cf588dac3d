package tcpproxy

import (
	"context"
	"net"
	"testing"
)

// Serve listens on a free loopback port and hands each connection it
// accepts to handle, in a goroutine of its own (handle closes it), until
// the listener is closed or the test ends: a stand-in upstream for the
// proxy or for a client under test. Refuse is the handle of a server
// that accepts and hangs up at once.
func Serve(tb testing.TB, handle func(net.Conn)) net.Listener {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("tcpproxy: listen: %v", err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln
}

// Refuse closes c: given to Serve, every round trip to the server fails.
func Refuse(c net.Conn) { _ = c.Close() }

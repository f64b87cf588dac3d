// Package tcpproxy is a TCP proxy for fault tests: put it between a binary
// and one of its dependencies (PostgreSQL, Redis, a Kafka broker, a peer)
// and the test can make that dependency vanish and come back without
// stopping it (the development broker keeps its data only in memory, and
// the shared database server serves other tests). While cut, the proxy
// drops every connection and refuses new ones, as a host whose server
// died does; restored, it forwards again on the same address.
package tcpproxy

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy forwards the connections made to Addr to an upstream address. Its
// methods are safe for concurrent use.
type Proxy struct {
	tb   testing.TB
	addr string

	mu       sync.Mutex
	upstream string
	ln       net.Listener // nil while cut
	conns    map[net.Conn]struct{}
	closed   bool
}

// Start listens on a free loopback port and forwards to upstream until the
// test ends.
func Start(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	p := Listen(tb)
	p.Forward(upstream)
	return p
}

// Listen binds a free loopback port without forwarding yet (connections
// wait in the backlog until Forward), for an upstream that must know the
// proxy's address before it starts, such as a Kafka broker advertising it.
func Listen(tb testing.TB) *Proxy {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("tcpproxy: listen: %v", err)
	}
	p := &Proxy{tb: tb, addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	tb.Cleanup(p.close)
	return p
}

// Addr is the proxy's address, "127.0.0.1:port": give it to the client in
// place of the upstream's.
func (p *Proxy) Addr() string { return p.addr }

// Forward starts forwarding to upstream. Call it once.
func (p *Proxy) Forward(upstream string) {
	p.mu.Lock()
	p.upstream = upstream
	ln := p.ln
	p.mu.Unlock()
	if ln != nil {
		go p.accept(ln)
	}
}

// Cut drops every open connection and refuses new ones (the port is
// closed) until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Restore listens on the proxy's address again and forwards new
// connections. It fails the test if the port was taken meanwhile.
func (p *Proxy) Restore() {
	p.tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil || p.closed {
		return
	}
	var (
		ln  net.Listener
		err error
	)
	// The port was just closed: another process may hold it a moment.
	for deadline := time.Now().Add(5 * time.Second); ; {
		ln, err = (&net.ListenConfig{}).Listen(context.Background(), "tcp", p.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		p.tb.Fatalf("tcpproxy: listen again on %s: %v", p.addr, err)
	}
	p.ln = ln
	if p.upstream != "" {
		go p.accept(ln)
	}
}

func (p *Proxy) close() {
	p.Cut()
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *Proxy) handle(c net.Conn) {
	p.mu.Lock()
	upstream := p.upstream
	p.mu.Unlock()
	up, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(context.Background(), "tcp", upstream)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, up) {
		_ = c.Close()
		_ = up.Close()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(up, c)
		_ = up.Close()
	}()
	_, _ = io.Copy(c, up)
	_ = c.Close()
	<-done
	p.untrack(c, up)
}

// track registers a live pair, or refuses it while cut.
func (p *Proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
	}
}

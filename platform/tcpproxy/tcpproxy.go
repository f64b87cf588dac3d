// Package tcpproxy is a TCP proxy for fault tests: put it between a binary
// and one of its dependencies (PostgreSQL, Redis, a Kafka broker, a peer)
// and the test can make that dependency vanish and come back without
// stopping it (the development broker keeps its data only in memory, and
// the shared database server serves other tests). The faults, the ones
// Toxiproxy calls toxics, each undone by the matching call:
//
//   - Cut: every connection dropped and new ones refused, as a host whose
//     server died (Restore).
//   - Reset: every open connection reset (RST), new ones still accepted,
//     as after a load balancer or NAT forgot them.
//   - Latency: each chunk of bytes held for a while in each direction, as
//     on a slow or distant link (Latency(0)).
//   - Stall: no byte passes either way and new connections hang after the
//     TCP handshake, as in a partition that drops packets; the calls in
//     flight run into their timeouts (Unstall: what was sent meanwhile
//     then arrives, as TCP retransmits it).
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
	latency  time.Duration
	// stalled is closed when the stall that made it ends; nil when bytes
	// flow.
	stalled chan struct{}
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

// Reset resets every open connection (a TCP RST to both ends) and keeps
// accepting new ones.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Every socket first, so that a pipe ending on the first close cannot
	// close its other end with a FIN before it is reset.
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST, not FIN
		}
	}
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

// Latency holds every chunk of bytes d before passing it on, in each
// direction, on open and new connections; 0 ends it.
func (p *Proxy) Latency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Stall stops every byte in both directions, on open and new connections,
// until Unstall.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Unstall lets the bytes held by Stall flow again.
func (p *Proxy) Unstall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// gate waits out a stall, then until the latency has passed since a chunk
// arrived at the proxy.
func (p *Proxy) gate(arrived time.Time) {
	p.mu.Lock()
	stalled, latency := p.stalled, p.latency
	p.mu.Unlock()
	if stalled != nil {
		<-stalled
	}
	if wait := time.Until(arrived.Add(latency)); wait > 0 {
		time.Sleep(wait)
	}
}

// Open is the number of connections forwarded now.
func (p *Proxy) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *Proxy) close() {
	p.Cut()
	p.Unstall()
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
		p.pipe(up, c)
		_ = up.Close()
	}()
	p.pipe(c, up)
	_ = c.Close()
	<-done
	p.untrack(c, up)
}

// chunk is bytes read from one side and when they arrived.
type chunk struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst through the gate until either fails. Reading runs
// ahead of writing, each chunk stamped on arrival, so that latency delays
// every chunk by the same time instead of adding up along a stream (as a
// long link does; Toxiproxy's latency toxic does the same).
func (p *Proxy) pipe(dst io.Writer, src io.Reader) {
	chunks := make(chan chunk, 64)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32*1024)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{b: buf[:n], at: time.Now()}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range chunks {
		if failed {
			continue // drain, so the reader ends when src does
		}
		p.gate(c.at)
		if _, err := dst.Write(c.b); err != nil {
			failed = true
			if cl, ok := src.(io.Closer); ok {
				_ = cl.Close() // end the reader
			}
		}
	}
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

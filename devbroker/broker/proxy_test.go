package broker_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/devbroker/internal/kafkatest"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
)

// TestOutageThroughProxy shows how fault tests simulate a Kafka outage
// without losing the in-memory data: the broker advertises a proxy's
// address, and cutting the proxy cuts every client.
func TestOutageThroughProxy(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	// The proxy's port must be known before the broker starts (to be
	// advertised), and the broker's before the proxy forwards.
	px := listenProxy(t)
	b := start(t, broker.Config{Topics: []string{"t"}, Partitions: 1, AdvertisedAddr: px.addr()})
	px.serve(b.ListenAddr())
	require.Equal(t, px.addr(), b.Addr())

	w := kafkatest.NewWriter(b.Addr(), "t")
	w.MaxAttempts = 1
	defer w.Close()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Value: []byte("before")}))

	px.cut()
	cutCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	require.Error(t, w.WriteMessages(cutCtx, kafka.Message{Value: []byte("during")}))

	px.restore()
	require.Eventually(t, func() bool {
		return w.WriteMessages(ctx, kafka.Message{Value: []byte("after")}) == nil
	}, 10*time.Second, 20*time.Millisecond)

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "t", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	got := kafkatest.FetchN(ctx, t, r, 2)
	require.Equal(t, "before", string(got[0].Value), "data written before the outage survives it")
	require.Equal(t, "after", string(got[1].Value))
}

// proxy is a minimal TCP proxy that can drop every connection and refuse
// new ones until restored.
type proxy struct {
	ln       net.Listener
	upstream string // set by serve

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

// listenProxy binds the proxy's port; connections wait in the backlog
// until serve.
func listenProxy(t *testing.T) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, conns: make(map[net.Conn]struct{})}
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// serve forwards every connection to upstream.
func (p *proxy) serve(upstream string) {
	p.upstream = upstream
	go p.accept()
}

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *proxy) handle(c net.Conn) {
	up, err := net.Dial("tcp", p.upstream)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(c, up) {
		c.Close()
		up.Close()
		return
	}
	go func() { _, _ = io.Copy(up, c); up.Close() }()
	_, _ = io.Copy(c, up)
	c.Close()
}

// track registers a live pair, or refuses it while the proxy is down.
func (p *proxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

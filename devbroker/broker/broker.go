// Package broker runs a development Kafka broker in memory: a single-node
// kfake cluster (github.com/twmb/franz-go/pkg/kfake) that speaks the real
// Kafka wire protocol on one TCP address, with the project's topics created
// up front. Clients reach it exactly as they reach Kafka, so code that takes
// KAFKA_BROKERS works unchanged against it or against a real cluster.
//
// Everything it holds (records, committed group offsets) lives in memory and
// is gone when the broker stops: a test that needs the broker to "fail" should
// cut the network between client and broker (a TCP proxy) rather than restart
// it.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Defaults applied to the zero values of Config.
const (
	// DefaultAddr is where clients look for Kafka when KAFKA_BROKERS is
	// unset.
	DefaultAddr = "127.0.0.1:9092"
	// DefaultPartitions matches KAFKA_NUM_PARTITIONS of the compose Kafka,
	// so per-key ordering and consumer-group spread behave the same.
	DefaultPartitions int32 = 6
	// ClusterID is reported to clients in metadata responses.
	ClusterID = "goodgo-devbroker"
)

// DefaultTopics returns the topics the system publishes to
// (event.Topics); a fresh slice each call, so callers may modify it.
func DefaultTopics() []string { return slices.Clone(event.Topics) }

// Config configures Start. The zero value is usable: every empty field takes
// its default.
type Config struct {
	// Addr is the TCP listen address, "host:port". Port 0 picks a free
	// port (read it back with Broker.Addr). Empty means DefaultAddr.
	Addr string
	// AdvertisedAddr is the "host:port" the broker tells clients to
	// connect to in metadata responses (Kafka's advertised.listeners).
	// Clients bootstrap from any address but then follow this one, so it
	// must be reachable by them. Empty means the bound address, with an
	// unspecified host (":9092", "0.0.0.0:9092") replaced by 127.0.0.1. A
	// port of 0 means the bound port.
	AdvertisedAddr string
	// Topics are created at start with Partitions partitions each. Empty
	// means DefaultTopics. Duplicates are ignored.
	Topics []string
	// Partitions is the partition count of every created topic, including
	// auto-created ones. Zero means DefaultPartitions.
	Partitions int32
	// AutoCreateTopics lets a metadata request that asks for an unknown
	// topic create it (with Partitions partitions), as Kafka's
	// auto.create.topics.enable does. Off by default so that a misspelt
	// topic fails loudly with UNKNOWN_TOPIC_OR_PARTITION instead of
	// silently receiving events nobody reads.
	AutoCreateTopics bool
	// TLS, when set, makes the listener TLS only, like Kafka's SSL and
	// SASL_SSL listeners: it holds the broker's certificate and, for
	// mutual TLS, ClientAuth and ClientCAs. TLS 1.2 is the least accepted.
	// Nil serves plaintext.
	TLS *tls.Config
	// Users, when not empty, turns SASL on (see User): until a connection
	// has logged in as one of them it may send only ApiVersions and the
	// SASL handshake. Empty means no SASL.
	Users []User
	// Logger receives the broker's JSON log lines: "listening", one
	// "topic created" per topic, "stopped", kfake's own warnings and, at
	// debug level, every connection and request. Nil discards them.
	Logger *slog.Logger
}

// withDefaults returns c with every empty field set to its default.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if len(c.Topics) == 0 {
		c.Topics = DefaultTopics()
	}
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Validate reports every problem with c, after defaults, in one error.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if _, _, err := splitHostPort(c.Addr); err != nil {
		errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
	}
	if c.AdvertisedAddr != "" {
		host, _, err := splitHostPort(c.AdvertisedAddr)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("advertised addr %q: %w", c.AdvertisedAddr, err))
		case host == "" || net.ParseIP(host).IsUnspecified():
			errs = append(errs, fmt.Errorf("advertised addr %q: needs a host clients can dial", c.AdvertisedAddr))
		}
	}
	if c.Partitions < 0 {
		errs = append(errs, fmt.Errorf("partitions %d: must be positive", c.Partitions))
	}
	for _, t := range c.Topics {
		if err := validTopic(t); err != nil {
			errs = append(errs, fmt.Errorf("topic %q: %w", t, err))
		}
	}
	errs = append(errs, c.validateSecurity()...)
	return errors.Join(errs...)
}

// splitHostPort splits a "host:port" address whose port is a number.
func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", 0, errors.New("port must be a number from 0 to 65535")
	}
	return host, int(n), nil
}

// validTopic applies Kafka's topic name rules, so a name Kafka would refuse
// is refused here too rather than working only against the dev broker.
func validTopic(t string) error {
	switch {
	case t == "" || t == "." || t == "..":
		return errors.New("not a legal topic name")
	case len(t) > 249:
		return errors.New("longer than 249 characters")
	}
	if strings.IndexFunc(t, notTopicRune) >= 0 {
		return errors.New("may contain only ASCII letters, digits, '.', '_' and '-'")
	}
	return nil
}

func notTopicRune(r rune) bool {
	switch {
	case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '.', r == '_', r == '-':
		return false
	}
	return true
}

// Broker is a running development broker. Its methods are safe for
// concurrent use.
type Broker struct {
	cluster    *kfake.Cluster
	addr       string
	listenAddr string
	log        *slog.Logger
	closeOnce  sync.Once
}

// Start listens on cfg.Addr, creates cfg.Topics and serves Kafka clients
// until Close. ctx bounds only the start-up; cancelling it later does not
// stop the broker. The error names the bad setting when cfg is invalid, and
// wraps the listen error when the address is taken.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("broker config: %w", err)
	}
	cfg = cfg.withDefaults()
	topics := dedup(cfg.Topics)
	log := cfg.Logger

	ln, err := new(net.ListenConfig).Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	advertised := advertise(cfg.AdvertisedAddr, ln.Addr().(*net.TCPAddr))
	wrapped := &listener{Listener: ln, advertised: advertised, log: log, tls: cfg.serverTLS(), sasl: len(cfg.Users) > 0}

	opts := []kfake.Opt{
		// One broker: every partition's leader and the group coordinator
		// are the one address clients were given.
		kfake.NumBrokers(1),
		// kfake always asks for 127.0.0.1:<port>; we hand it our own
		// listener so that cfg.Addr decides the interface and port.
		kfake.ListenFn(func(string, string) (net.Listener, error) { return wrapped, nil }),
		kfake.ClusterID(ClusterID),
		kfake.SeedTopics(cfg.Partitions, topics...),
		// Without this, auto-created topics and CreateTopics requests
		// that leave the count to the broker would get kfake's 10.
		kfake.DefaultNumPartitions(int(cfg.Partitions)),
		kfake.WithLogger(kfakeLogger{log: log}),
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	opts = append(opts, cfg.securityOpts()...)
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		_ = ln.Close() // NewCluster closes it only on some paths; a second Close is harmless
		return nil, fmt.Errorf("start kfake cluster: %w", err)
	}
	b := &Broker{cluster: cluster, addr: advertised.String(), listenAddr: ln.Addr().String(), log: log}

	if log.Enabled(ctx, slog.LevelDebug) {
		// Observe every request without handling it (returning false
		// keeps the hook installed and lets kfake answer normally).
		// Installed only at debug level: each hooked request costs a
		// goroutine hand-off inside kfake's single-threaded loop, and
		// kfake remembers each connection's last hooked request for the
		// broker's lifetime (memory that grows with connections).
		cluster.Control(func(req kmsg.Request) (kmsg.Response, error, bool) {
			log.Debug("request", "api", kmsg.NameForKey(req.Key()), "version", req.GetVersion())
			return nil, nil, false
		})
	}

	log.Info("listening", append([]any{"addr", b.addr, "listen_addr", b.listenAddr,
		"partitions", cfg.Partitions, "auto_create_topics", cfg.AutoCreateTopics}, cfg.securityLog()...)...)
	for _, t := range topics {
		log.Info("topic created", "topic", t, "partitions", cfg.Partitions)
	}
	return b, nil
}

// advertise resolves the address given to clients from the configured one
// and the bound one.
func advertise(configured string, bound *net.TCPAddr) advertisedAddr {
	if configured == "" {
		host := bound.IP.String()
		if bound.IP.IsUnspecified() {
			// Listening on every interface; loopback is the one
			// address sure to reach it from this machine.
			host = "127.0.0.1"
		}
		return advertisedAddr{host: host, port: bound.Port}
	}
	host, port, _ := splitHostPort(configured) // checked by Validate
	if port == 0 {
		port = bound.Port
	}
	return advertisedAddr{host: host, port: port}
}

// dedup drops repeated topics, keeping first-seen order for the logs.
func dedup(ts []string) []string {
	seen := make(map[string]bool, len(ts))
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	return out
}

// Addr returns the "host:port" clients should use as KAFKA_BROKERS: the
// advertised address, whose port is the real one when Config.Addr asked for
// port 0.
func (b *Broker) Addr() string { return b.addr }

// ListenAddr returns the address the broker is bound to. It differs from
// Addr when Config.AdvertisedAddr is set, for example to a TCP proxy in
// front of the broker: the proxy forwards to ListenAddr.
func (b *Broker) ListenAddr() string { return b.listenAddr }

// Close stops the broker: the listener is closed at once (the port is free
// when Close returns), open connections are dropped and all data is lost.
// Calling Close more than once is harmless.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		b.cluster.Close()
		b.log.Info("stopped", "addr", b.addr)
	})
}

// listener makes kfake advertise the configured address, terminates TLS
// when configured, and logs connections at debug level.
type listener struct {
	net.Listener
	advertised advertisedAddr
	log        *slog.Logger
	tls        *tls.Config // nil: plaintext
	sasl       bool        // wrap connections in saslConn
}

// Addr is what kfake puts in metadata, produce, fetch and find-coordinator
// responses as this broker's host and port.
func (l *listener) Addr() net.Addr { return l.advertised }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if l.tls != nil {
		// The handshake runs at kfake's first read, on its goroutine.
		c = tls.Server(c, l.tls)
	}
	if l.sasl {
		c = newSASLConn(c)
	}
	if !l.log.Enabled(context.Background(), slog.LevelDebug) {
		return c, nil
	}
	l.log.Debug("connection opened", "remote", c.RemoteAddr().String())
	return &conn{Conn: c, log: l.log}, nil
}

// advertisedAddr is a TCP address whose host may be a name, which
// net.TCPAddr cannot hold.
type advertisedAddr struct {
	host string
	port int
}

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return net.JoinHostPort(a.host, strconv.Itoa(a.port)) }

// conn logs when a client connection ends; kfake closes it from both its
// reader and writer goroutines, hence the Once.
type conn struct {
	net.Conn
	log  *slog.Logger
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() { c.log.Debug("connection closed", "remote", c.RemoteAddr().String()) })
	return c.Conn.Close()
}

// kfakeLogger forwards kfake's printf-style log lines to slog. kfake logs
// client request failures at its info level and protocol detail at debug.
type kfakeLogger struct{ log *slog.Logger }

func (l kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo:
		sl = slog.LevelInfo
	default:
		sl = slog.LevelDebug
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, sl) {
		return
	}
	l.log.Log(ctx, sl, fmt.Sprintf(format, args...), "component", "kfake")
}

package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/mtls/mtlstest"
)

const secTopic = "goodgo.secure.events"

// The logins of the secured brokers, one per mechanism.
var (
	relayUser = broker.User{Mechanism: broker.SASLScramSHA512, Name: "relay", Password: "relay-512-secret"}
	orchUser  = broker.User{Mechanism: broker.SASLScramSHA256, Name: "orchestrator", Password: "orch-256-secret"}
	opsUser   = broker.User{Mechanism: broker.SASLPlain, Name: "ops", Password: "ops-plain-secret"}
)

// testPKI is mtlstest's broker PKI, with the broker's and a client's
// configurations.
type testPKI struct{ mtlstest.BrokerPKI }

func newTestPKI(t *testing.T, name string) testPKI {
	return testPKI{mtlstest.NewBrokerPKI(t, name)}
}

// serverTLS serves p's broker certificate; with mutual, it requires a client
// certificate issued by p's CA.
func (p testPKI) serverTLS(mutual bool) *tls.Config {
	c := &tls.Config{Certificates: []tls.Certificate{p.Server}}
	if mutual {
		c.ClientCAs = x509.NewCertPool()
		c.ClientCAs.AddCert(p.CA.Cert)
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c
}

// startSecure runs a broker that serves TLS only and requires a SASL
// login as one of the three users.
func startSecure(t *testing.T, p testPKI, mutual bool) *broker.Broker {
	t.Helper()
	return start(t, broker.Config{Topics: []string{secTopic}, Partitions: 1, TLS: p.serverTLS(mutual),
		Users: []broker.User{relayUser, orchUser, opsUser}})
}

// client is the configuration a service would load: TLS trusting p's CA and
// a login as u.
func (p testPKI) client(addr string, u broker.User) config.Kafka {
	return config.Kafka{Brokers: []string{addr}, TLS: true, CAFile: p.CAFile,
		SASL: config.KafkaSASL{Mechanism: u.Mechanism, Username: u.Name, Password: u.Password}}
}

// metadata connects as cfg (TCP, TLS, SASL) and asks for the partitions,
// returning the first error.
func metadata(ctx context.Context, t *testing.T, cfg config.Kafka) error {
	t.Helper()
	s, err := kafkaconn.New(cfg)
	require.NoError(t, err)
	return metadataWith(ctx, s.Dialer("test"), cfg.Brokers[0])
}

func metadataWith(ctx context.Context, d *kafka.Dialer, addr string) error {
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = conn.ReadPartitions()
	return err
}

// produce writes one message as cfg, without retries.
func produce(ctx context.Context, t *testing.T, cfg config.Kafka, value string) error {
	t.Helper()
	s, err := kafkaconn.New(cfg)
	require.NoError(t, err)
	tr := s.Transport("test")
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: secTopic, Transport: tr,
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond, MaxAttempts: 1}
	defer func() { _ = w.Close() }()
	return w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte(value)})
}

// TestSecurity_LoginsWork: over TLS, each mechanism's user logs in; the
// SCRAM-SHA-512 user writes through a Transport and a group reader reads
// through a Dialer, as the relay and the inbox do.
func TestSecurity_LoginsWork(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := newTestPKI(t, "devbroker test CA")
	// At debug level, as the connection log and the request hook sit
	// around the TLS and SASL layers.
	var logs lockedBuffer
	b := start(t, broker.Config{Topics: []string{secTopic}, Partitions: 1, TLS: p.serverTLS(false),
		Users:  []broker.User{relayUser, orchUser, opsUser},
		Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})

	for _, u := range []broker.User{relayUser, orchUser, opsUser} {
		require.NoError(t, metadata(ctx, t, p.client(b.Addr(), u)), "login as %s", u)
	}

	cfg := p.client(b.Addr(), relayUser)
	require.NoError(t, produce(ctx, t, cfg, "secured"))
	s, err := kafkaconn.New(cfg)
	require.NoError(t, err)
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: secTopic, GroupID: "secure-readers",
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, Dialer: s.Dialer("test")})
	defer func() { require.NoError(t, r.Close()) }()
	m, err := r.FetchMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "secured", string(m.Value))
	require.NoError(t, r.CommitMessages(ctx, m))
	require.Contains(t, msgs(logs.lines(t)), "connection opened")
	require.Contains(t, logs.lines(t), findLine(logs.lines(t), "request", "api", "SASLAuthenticate"))
}

// unknownMechanism is a SASL mechanism the broker does not offer.
type unknownMechanism struct{}

func (unknownMechanism) Name() string { return "OAUTHBEARER" }
func (unknownMechanism) Start(context.Context) (sasl.StateMachine, []byte, error) {
	return nil, nil, errors.New("not reached")
}

// TestSecurity_RefusesWhatKafkaRefuses: every client that is not both on
// TLS trusting the broker and logged in with the right credentials fails.
func TestSecurity_RefusesWhatKafkaRefuses(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t, "devbroker test CA")
	other := newTestPKI(t, "another CA")
	b := startSecure(t, p, false)
	good := p.client(b.Addr(), relayUser)

	with := func(f func(*config.Kafka)) config.Kafka {
		c := good
		f(&c)
		return c
	}
	authFailed := func(t *testing.T, err error) {
		t.Helper()
		require.ErrorIs(t, err, kafka.SASLAuthenticationFailed)
	}
	untrusted := func(t *testing.T, err error) {
		t.Helper()
		var unknown x509.UnknownAuthorityError
		require.ErrorAs(t, err, &unknown)
	}
	failed := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
	}
	for _, tc := range []struct {
		name  string
		cfg   config.Kafka
		check func(*testing.T, error)
	}{
		{"a plaintext client", with(func(c *config.Kafka) { c.TLS, c.CAFile = false, "" }), failed},
		{"a client that trusts another CA", with(func(c *config.Kafka) { c.CAFile = other.CAFile }), untrusted},
		{"a client that trusts only the system roots", with(func(c *config.Kafka) { c.CAFile = "" }), untrusted},
		{"a wrong password", with(func(c *config.Kafka) { c.SASL.Password = "wrong" }), authFailed},
		{"an unknown user", with(func(c *config.Kafka) { c.SASL.Username = "mallory" }), authFailed},
		{"the right password with another SCRAM mechanism", with(func(c *config.Kafka) { c.SASL.Mechanism = config.SASLScramSHA256 }), authFailed},
		{"another user's password", with(func(c *config.Kafka) { c.SASL.Password = orchUser.Password }), authFailed},
		{"kfake's built-in admin login", with(func(c *config.Kafka) {
			c.SASL = config.KafkaSASL{Mechanism: config.SASLScramSHA256, Username: "admin", Password: "admin"}
		}), authFailed},
		{"a client without SASL", with(func(c *config.Kafka) { c.SASL = config.KafkaSASL{} }), failed},
	} {
		t.Run(tc.name+" is refused", func(t *testing.T) {
			t.Parallel()
			ctx := testCtx(t)
			tc.check(t, metadata(ctx, t, tc.cfg))
			tc.check(t, produce(ctx, t, tc.cfg, "refused"))
		})
	}

	t.Run("a mechanism the broker does not offer is refused", func(t *testing.T) {
		t.Parallel()
		s, err := kafkaconn.New(good)
		require.NoError(t, err)
		d := s.Dialer("test")
		d.SASLMechanism = unknownMechanism{}
		require.ErrorIs(t, metadataWith(testCtx(t), d, b.Addr()), kafka.UnsupportedSASLMechanism)
	})
}

// TestSecurity_UnauthenticatedRequestsGoUnanswered speaks the protocol by
// hand over TLS: before a login the broker answers ApiVersions (clients
// need it to start the handshake) and closes the connection, unanswered, at
// any other request, as Kafka does; a produce without a login writes
// nothing.
func TestSecurity_UnauthenticatedRequestsGoUnanswered(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	p := newTestPKI(t, "devbroker test CA")
	b := startSecure(t, p, false)
	roots := x509.NewCertPool()
	roots.AddCert(p.CA.Cert)

	for _, req := range []kmsg.Request{
		&kmsg.MetadataRequest{Version: 1},
		&kmsg.FindCoordinatorRequest{Version: 1, CoordinatorKey: "g"},
		&kmsg.ListOffsetsRequest{Version: 1, Topics: []kmsg.ListOffsetsRequestTopic{{Topic: secTopic,
			Partitions: []kmsg.ListOffsetsRequestTopicPartition{{Partition: 0, Timestamp: -1}}}}},
	} {
		t.Run(kmsg.NameForKey(req.Key()), func(t *testing.T) {
			d := tls.Dialer{Config: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
			c, err := d.DialContext(ctx, "tcp", b.Addr())
			require.NoError(t, err)
			defer c.Close()
			deadline, _ := ctx.Deadline()
			require.NoError(t, c.SetDeadline(deadline))
			f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("raw"))

			_, err = c.Write(f.AppendRequest(nil, &kmsg.ApiVersionsRequest{Version: 0}, 1))
			require.NoError(t, err)
			corr, body, err := readResponse(c)
			require.NoError(t, err, "ApiVersions is answered before a login")
			require.Equal(t, int32(1), corr)
			var av kmsg.ApiVersionsResponse
			require.NoError(t, av.ReadFrom(body))
			require.Zero(t, av.ErrorCode)

			_, err = c.Write(f.AppendRequest(nil, req, 2))
			require.NoError(t, err)
			_, _, err = readResponse(c)
			require.ErrorIs(t, err, io.EOF, "closed without an answer")
		})
	}

	// A produce without a login, through kafka-go, fails; a logged-in
	// client then finds the partition empty.
	noSASL := p.client(b.Addr(), relayUser)
	noSASL.SASL = config.KafkaSASL{}
	require.Error(t, produce(ctx, t, noSASL, "must not land"))
	s, err := kafkaconn.New(p.client(b.Addr(), relayUser))
	require.NoError(t, err)
	conn, err := s.Dialer("test").DialLeader(ctx, "tcp", b.Addr(), secTopic, 0)
	require.NoError(t, err)
	defer conn.Close()
	last, err := conn.ReadLastOffset()
	require.NoError(t, err)
	require.Zero(t, last, "nothing was written without a login")
}

// readResponse reads one response frame: its correlation id and body.
func readResponse(r io.Reader) (int32, []byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return 0, nil, err
	}
	frame := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, frame); err != nil {
		return 0, nil, err
	}
	return int32(binary.BigEndian.Uint32(frame[:4])), frame[4:], nil
}

// TestSecurity_MutualTLS: with a client CA the broker requires a
// certificate it issued.
func TestSecurity_MutualTLS(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t, "devbroker test CA")
	other := newTestPKI(t, "another CA")
	b := startSecure(t, p, true)

	withCert := p.client(b.Addr(), relayUser)
	withCert.CertFile, withCert.KeyFile = p.ClientCert, p.ClientKey
	require.NoError(t, metadata(testCtx(t), t, withCert))
	require.NoError(t, produce(testCtx(t), t, withCert, "mutual"))

	require.Error(t, metadata(testCtx(t), t, p.client(b.Addr(), relayUser)), "no client certificate")
	foreign := withCert
	foreign.CertFile, foreign.KeyFile = other.ClientCert, other.ClientKey
	require.Error(t, metadata(testCtx(t), t, foreign), "a client certificate of another CA")
}

func TestSecurity_ListeningLineNamesLoginsNotPasswords(t *testing.T) {
	t.Parallel()
	p := newTestPKI(t, "devbroker test CA")
	var buf lockedBuffer
	b, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", TLS: p.serverTLS(true),
		Users: []broker.User{relayUser, opsUser}, Logger: slog.New(slog.NewJSONHandler(&buf, nil))})
	require.NoError(t, err)
	b.Close()
	lines := buf.lines(t)
	require.Equal(t, map[string]any{"msg": "listening", "tls": true, "client_auth": "RequireAndVerifyClientCert",
		"sasl_users": "SCRAM-SHA-512:relay,PLAIN:ops"}, pick(lines[0], "msg", "tls", "client_auth", "sasl_users"))
	for _, l := range lines {
		for _, v := range l {
			s, _ := v.(string)
			require.NotContains(t, s, "secret")
		}
	}

	// The plaintext default says so.
	var buf2 lockedBuffer
	b2, err := broker.Start(t.Context(), broker.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.NewJSONHandler(&buf2, nil))})
	require.NoError(t, err)
	b2.Close()
	require.Equal(t, map[string]any{"tls": false, "client_auth": nil, "sasl_users": nil},
		pick(buf2.lines(t)[0], "tls", "client_auth", "sasl_users"))
}

func TestSecurity_ConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  broker.Config
		want string
	}{
		{broker.Config{TLS: &tls.Config{}}, "tls: no server certificate"},
		{broker.Config{Users: []broker.User{{Mechanism: "GSSAPI", Name: "u", Password: "p"}}},
			`user 1: mechanism "GSSAPI": must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512`},
		{broker.Config{Users: []broker.User{{Mechanism: broker.SASLPlain, Name: "u"}}},
			"user 1 (PLAIN:u): needs a name and a password"},
		{broker.Config{Users: []broker.User{relayUser, {Mechanism: relayUser.Mechanism, Name: relayUser.Name, Password: "x"}}},
			"user 2 (SCRAM-SHA-512:relay): listed twice"},
	} {
		err := tc.cfg.Validate()
		require.EqualError(t, err, tc.want)
		require.NotContains(t, err.Error(), "secret")
	}
	// One name under two mechanisms is two logins, as in Kafka.
	require.NoError(t, broker.Config{Users: []broker.User{relayUser,
		{Mechanism: broker.SASLScramSHA256, Name: relayUser.Name, Password: "p"}}}.Validate())
	require.Equal(t, "SCRAM-SHA-512:relay", relayUser.String())
}

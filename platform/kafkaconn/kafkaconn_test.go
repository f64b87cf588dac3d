package kafkaconn_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/mtls/mtlstest"
)

const topic = "goodgo.test.events"

func write(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, b, 0o600))
	return p
}

// startBroker runs the development broker's engine (kfake; platform does
// not import devbroker, which imports platform) with TLS that requires a
// client certificate from p's CA and one SCRAM-SHA-512 user.
func startBroker(t *testing.T, p mtlstest.BrokerPKI, user, password string) string {
	t.Helper()
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(p.CA.Cert)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topic),
		kfake.TLS(&tls.Config{
			MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{p.Server},
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCAs,
		}),
		kfake.EnableSASL(), kfake.Superuser(config.SASLScramSHA512, user, password))
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func TestNew(t *testing.T) {
	t.Parallel()
	p := mtlstest.NewBrokerPKI(t, "kafka test CA")
	dir := t.TempDir()
	notPEM := write(t, dir, "not-pem", []byte("hello"))
	empty := write(t, dir, "empty", []byte(" \n"))
	missing := filepath.Join(dir, "missing")

	t.Run("the zero configuration is plaintext without SASL", func(t *testing.T) {
		s, err := kafkaconn.New(config.Kafka{Brokers: []string{"127.0.0.1:9092"}})
		require.NoError(t, err)
		require.Equal(t, kafkaconn.Settings{}, s)
		d := s.Dialer("id")
		require.Nil(t, d.TLS)
		require.Nil(t, d.SASLMechanism)
		require.Equal(t, "id", d.ClientID)
		require.Equal(t, kafka.DefaultDialer.Timeout, d.Timeout)
		tr := s.Transport("id")
		require.Nil(t, tr.TLS)
		require.Nil(t, tr.SASL)
	})

	t.Run("TLS is at least 1.2, with the configured roots and server name", func(t *testing.T) {
		s, err := kafkaconn.New(config.Kafka{TLS: true, CAFile: p.CAFile, ServerName: "kafka.internal",
			CertFile: p.ClientCert, KeyFile: p.ClientKey})
		require.NoError(t, err)
		require.Equal(t, uint16(tls.VersionTLS12), s.TLS.MinVersion)
		require.Equal(t, "kafka.internal", s.TLS.ServerName)
		require.NotNil(t, s.TLS.RootCAs)
		cert, err := s.TLS.GetClientCertificate(nil)
		require.NoError(t, err)
		require.NotEmpty(t, cert.Certificate)
		require.NotSame(t, s.TLS, s.Dialer("").TLS, "each client gets its own copy")
		require.NotSame(t, s.TLS, s.Transport("").TLS, "each client gets its own copy")
	})

	t.Run("TLS without a CA file trusts the system roots", func(t *testing.T) {
		s, err := kafkaconn.New(config.Kafka{TLS: true})
		require.NoError(t, err)
		require.Nil(t, s.TLS.RootCAs)
		require.Nil(t, s.TLS.GetClientCertificate)
	})

	t.Run("each mechanism is kafka-go's", func(t *testing.T) {
		for _, m := range []string{config.SASLScramSHA256, config.SASLScramSHA512, config.SASLPlain} {
			s, err := kafkaconn.New(config.Kafka{SASL: config.KafkaSASL{Mechanism: m, Username: "u", Password: "p"}})
			require.NoError(t, err)
			require.Equal(t, m, s.SASL.Name())
			require.Equal(t, s.SASL, s.Dialer("").SASLMechanism)
			require.Equal(t, s.SASL, s.Transport("").SASL)
		}
	})

	for _, tc := range []struct {
		name string
		cfg  config.Kafka
		want string
	}{
		{"a missing CA file", config.Kafka{TLS: true, CAFile: missing},
			"kafka: KAFKA_CA_FILE: open " + missing + ": no such file or directory"},
		{"a CA file without a certificate", config.Kafka{TLS: true, CAFile: notPEM},
			"kafka: KAFKA_CA_FILE: " + notPEM + " holds no PEM certificate"},
		{"a missing client key", config.Kafka{TLS: true, CertFile: p.ClientCert, KeyFile: missing},
			"kafka: KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE: open " + missing + ": no such file or directory"},
		{"a client key that is not one", config.Kafka{TLS: true, CertFile: p.ClientCert, KeyFile: notPEM},
			"kafka: KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE: tls: failed to find any PEM data in key input"},
		{"a missing password file", config.Kafka{SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "u", PasswordFile: missing}},
			"kafka: KAFKA_SASL_PASSWORD_FILE: open " + missing + ": no such file or directory"},
		{"an empty password file", config.Kafka{SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "u", PasswordFile: empty}},
			"kafka: KAFKA_SASL_PASSWORD_FILE: " + empty + " is empty"},
	} {
		t.Run(tc.name+" is an error naming its variable", func(t *testing.T) {
			_, err := kafkaconn.New(tc.cfg)
			require.EqualError(t, err, tc.want)
		})
	}

	t.Run("every bad file is reported at once", func(t *testing.T) {
		_, err := kafkaconn.New(config.Kafka{TLS: true, CAFile: missing,
			SASL: config.KafkaSASL{Mechanism: config.SASLPlain, Username: "u", PasswordFile: missing}})
		require.ErrorContains(t, err, "KAFKA_CA_FILE")
		require.ErrorContains(t, err, "KAFKA_SASL_PASSWORD_FILE")
	})

	t.Run("a password SCRAM cannot use is refused without being quoted", func(t *testing.T) {
		const bad = "pass\u0007word" // a control character: SASLprep refuses it
		_, err := kafkaconn.New(config.Kafka{SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA256, Username: "u", Password: bad}})
		require.EqualError(t, err, "kafka: KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: not usable with SCRAM-SHA-256")
	})
}

// TestRoundTrip writes through a Transport and reads through a Dialer
// from a broker that requires TLS with a client certificate and
// SCRAM-SHA-512, with the password read from a file ending in a newline.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	p := mtlstest.NewBrokerPKI(t, "kafka test CA")
	addr := startBroker(t, p, "relay", "correct horse")
	pwFile := write(t, t.TempDir(), "password", []byte("correct horse\n"))
	s, err := kafkaconn.New(config.Kafka{
		Brokers: []string{addr}, TLS: true, CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey,
		SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "relay", PasswordFile: pwFile},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: topic, Transport: s.Transport("test-writer"),
		RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer func() { require.NoError(t, w.Close()) }()
	require.NoError(t, w.WriteMessages(ctx, kafka.Message{Key: []byte("k"), Value: []byte("over TLS and SCRAM")}))

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, Topic: topic, GroupID: "test",
		StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond, Dialer: s.Dialer("test-reader")})
	defer func() { require.NoError(t, r.Close()) }()
	m, err := r.FetchMessage(ctx)
	require.NoError(t, err)
	require.Equal(t, "over TLS and SCRAM", string(m.Value))
	require.NoError(t, r.CommitMessages(ctx, m))

	// Without the client certificate the broker refuses the handshake.
	noCert, err := kafkaconn.New(config.Kafka{TLS: true, CAFile: p.CAFile,
		SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "relay", Password: "correct horse"}})
	require.NoError(t, err)
	conn, err := noCert.Dialer("").DialContext(ctx, "tcp", addr)
	if err == nil {
		// TLS 1.3 clients learn of the refusal at their first read.
		_, err = conn.ReadPartitions()
		_ = conn.Close()
	}
	require.Error(t, err)
}

// TestPing answers for a broker that accepts the client's credentials, and
// fails, saying why, for one that refuses them or is not there.
func TestPing(t *testing.T) {
	t.Parallel()
	p := mtlstest.NewBrokerPKI(t, "kafka test CA")
	addr := startBroker(t, p, "orchestrator", "s3cret")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cfg := config.Kafka{TLS: true, CAFile: p.CAFile, CertFile: p.ClientCert, KeyFile: p.ClientKey,
		SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "orchestrator", Password: "s3cret"}}
	s, err := kafkaconn.New(cfg)
	require.NoError(t, err)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	nobody := lis.Addr().String()
	require.NoError(t, lis.Close())

	require.NoError(t, s.Ping(ctx, "test", []string{addr}))
	require.NoError(t, s.Ping(ctx, "test", []string{nobody, addr}), "one broker answering is enough")
	err = s.Ping(ctx, "test", []string{nobody})
	require.ErrorIs(t, err, syscall.ECONNREFUSED)

	cfg.SASL.Password = "wrong"
	wrong, err := kafkaconn.New(cfg)
	require.NoError(t, err)
	require.Error(t, wrong.Ping(ctx, "test", []string{addr}), "a broker refusing the login is not usable")
}

func TestCheckTopics(t *testing.T) {
	t.Parallel()
	// Auto-creation on, as on a careless cluster: the check must still not
	// create what it asks about.
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "a.events", "b.events"), kfake.AllowAutoTopicCreation())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	var s kafkaconn.Settings
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("present topics pass", func(t *testing.T) {
		require.NoError(t, s.CheckTopics(ctx, "test", brokers, []string{"a.events", "b.events"}))
	})
	t.Run("missing topics are named, in order, and not created", func(t *testing.T) {
		for range 2 {
			err := s.CheckTopics(ctx, "test", brokers, []string{"c.events", "a.events", "d.events"})
			var missing *kafkaconn.MissingTopicsError
			require.ErrorAs(t, err, &missing)
			require.Equal(t, []string{"c.events", "d.events"}, missing.Topics)
			require.Equal(t, "missing topics c.events, d.events", missing.ReadinessReason())
		}
		err := s.CheckTopics(ctx, "test", brokers, []string{"c.events"})
		require.EqualError(t, err, "kafka: missing topic c.events (create it; the brokers do not create topics on demand)")
	})
	t.Run("an unreachable broker is not a missing topic", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		err = s.CheckTopics(ctx, "test", []string{addr}, []string{"a.events"})
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
		var missing *kafkaconn.MissingTopicsError
		require.False(t, errors.As(err, &missing))
	})
}

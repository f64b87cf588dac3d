// Package kafkaconn builds the connection settings of the project's Kafka
// client, segmentio/kafka-go, from config.Kafka: TLS (at least TLS 1.2, the
// brokers verified against KAFKA_CA_FILE or the system roots, an optional
// client certificate) and SASL (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN).
// Readers take a *kafka.Dialer, writers a *kafka.Transport; both come from
// one Settings, so every connection a binary opens is secured alike.
//
// New reads the files at start, so a missing or unreadable file stops the
// binary with an error naming its variable instead of failing at the first
// connection. The client certificate is re-read when its files change
// (cert-manager renews it in place); the CA and the password are read once.
package kafkaconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/tlsfiles"
)

// DialTimeout bounds a Dialer's connection set-up (TCP, TLS and SASL), as
// kafka-go's DefaultDialer does.
const DialTimeout = 10 * time.Second

// Settings secure the connections of kafka-go's clients. The zero value is
// a plaintext connection without SASL, which is what kafka-go does by
// default. Settings are safe for concurrent use.
type Settings struct {
	// TLS is the client TLS configuration; nil means plaintext.
	TLS *tls.Config
	// SASL authenticates every connection; nil means none.
	SASL sasl.Mechanism
}

// New reads the files cfg names and returns the settings of its
// connections. Every error names the variable at fault and never carries the
// password.
func New(cfg config.Kafka) (Settings, error) {
	var s Settings
	var errs []error
	if cfg.TLS {
		c, err := tlsConfig(cfg)
		if err != nil {
			errs = append(errs, err)
		}
		s.TLS = c
	}
	if cfg.SASL.Mechanism != "" {
		m, err := mechanism(cfg.SASL)
		if err != nil {
			errs = append(errs, err)
		}
		s.SASL = m
	}
	if err := errors.Join(errs...); err != nil {
		return Settings{}, fmt.Errorf("kafka: %w", err)
	}
	return s, nil
}

// Dialer returns a new Dialer for kafka.ReaderConfig.Dialer (and for
// kafka.Dialer.DialContext), naming the client clientID (empty: kafka-go's
// default).
func (s Settings) Dialer(clientID string) *kafka.Dialer {
	return &kafka.Dialer{
		ClientID:      clientID,
		Timeout:       DialTimeout,
		DualStack:     true,
		TLS:           s.tlsClone(),
		SASLMechanism: s.SASL,
	}
}

// Ping reports whether one of brokers answers a client clientID, for
// readiness checks: it connects as the binary's readers and writers do
// (TLS handshake and SASL login included, so a broker that refuses the
// credentials fails too) and asks for the API versions. ctx bounds it. The
// error joins every broker's.
func (s Settings) Ping(ctx context.Context, clientID string, brokers []string) error {
	if len(brokers) == 0 {
		return errors.New("kafka: no broker")
	}
	dialer := s.Dialer(clientID)
	var errs []error
	for _, b := range brokers {
		conn, err := dialer.DialContext(ctx, "tcp", b)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if deadline, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(deadline)
		}
		_, err = conn.ApiVersions()
		_ = conn.Close()
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("kafka unreachable: %w", errors.Join(errs...))
}

// MissingTopicsError names the topics a cluster does not have. Kafka
// clusters in production do not create topics on demand
// (auto.create.topics.enable=false), nor does the development broker
// unless asked: an init step creates them with their partition counts.
type MissingTopicsError struct {
	// Topics are the missing topics, in the order they were asked for.
	Topics []string
}

func (e *MissingTopicsError) Error() string {
	return "kafka: " + e.ReadinessReason() + " (create it; the brokers do not create topics on demand)"
}

// ReadinessReason is what /readyz shows (opshttp.Reason): "missing topic
// goodgo.order.events", or "missing topics a, b". A topic name names no
// host, user or database.
func (e *MissingTopicsError) ReadinessReason() string {
	if len(e.Topics) == 1 {
		return "missing topic " + e.Topics[0]
	}
	return "missing topics " + strings.Join(e.Topics, ", ")
}

// CheckTopics asks one of brokers, as client clientID, for the metadata of
// topics and returns a *MissingTopicsError naming each one the cluster does
// not have. The request does not allow the broker to create them (metadata
// v4 and later say so; older requests made kafka-go's readers create the
// topic on a cluster with auto-creation on). Any other failure, of the
// connection or of one topic, is returned as it is. ctx bounds it.
func (s Settings) CheckTopics(ctx context.Context, clientID string, brokers, topics []string) error {
	if len(brokers) == 0 {
		return errors.New("kafka: no broker")
	}
	transport := s.Transport(clientID)
	defer transport.CloseIdleConnections()
	var errs []error
	for _, b := range brokers {
		client := &kafka.Client{Addr: kafka.TCP(b), Transport: transport}
		resp, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		found := make(map[string]error, len(resp.Topics))
		for _, t := range resp.Topics {
			found[t.Name] = t.Error
		}
		var missing []string
		for _, t := range topics {
			err, ok := found[t]
			switch {
			case !ok, errors.Is(err, kafka.UnknownTopicOrPartition):
				missing = append(missing, t)
			case err != nil:
				return fmt.Errorf("kafka: topic %s: %w", t, err)
			}
		}
		if len(missing) > 0 {
			return &MissingTopicsError{Topics: missing}
		}
		return nil
	}
	return fmt.Errorf("kafka unreachable: %w", errors.Join(errs...))
}

// Ready is the readiness check of a binary that needs topics: one of
// brokers answers (Ping) and has every topic (CheckTopics). A missing topic
// makes the binary not ready, naming the topic, rather than stopping it:
// it becomes ready once the topic is created.
func (s Settings) Ready(ctx context.Context, clientID string, brokers, topics []string) error {
	if err := s.Ping(ctx, clientID, brokers); err != nil {
		return err
	}
	return s.CheckTopics(ctx, clientID, brokers, topics)
}

// WarnMissingTopics logs, once at start, the topics the cluster does not
// have. It neither waits for them nor stops the binary: readiness (Ready)
// names them until they exist. An unreachable broker is left to readiness
// too; the check gives up after a few seconds.
func (s Settings) WarnMissingTopics(ctx context.Context, clientID string, brokers, topics []string, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var missing *MissingTopicsError
	if err := s.CheckTopics(ctx, clientID, brokers, topics); errors.As(err, &missing) {
		logger.WarnContext(ctx, "kafka topics missing: not ready until they are created", "topics", missing.Topics)
	}
}

// AwaitTopics returns once the cluster has every topic, checking every
// interval while a topic is missing, so that a consumer group joins only
// then: kafka-go's group reader assigns the partitions of the topics that
// existed when it joined, and would never read a topic created later. Any
// other failure (an unreachable broker) returns nil at once: the consumer
// retries those itself, and readiness reports them. It returns ctx's error
// when ctx ends first.
func (s Settings) AwaitTopics(ctx context.Context, clientID string, brokers, topics []string, interval time.Duration) error {
	for {
		cctx, cancel := context.WithTimeout(ctx, DialTimeout)
		err := s.CheckTopics(cctx, clientID, brokers, topics)
		cancel()
		var missing *MissingTopicsError
		if !errors.As(err, &missing) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Transport returns a new Transport for kafka.Writer.Transport, naming the
// client clientID; the caller may tune its other fields before first use.
func (s Settings) Transport(clientID string) *kafka.Transport {
	return &kafka.Transport{
		ClientID: clientID,
		TLS:      s.tlsClone(),
		SASL:     s.SASL,
	}
}

// tlsClone gives each client its own copy: kafka-go fills in ServerName per
// broker on a clone, but a caller tuning one client must not tune them all.
func (s Settings) tlsClone() *tls.Config {
	if s.TLS == nil {
		return nil
	}
	return s.TLS.Clone()
}

func tlsConfig(cfg config.Kafka) (*tls.Config, error) {
	// ServerName stays empty unless configured: kafka-go then checks each
	// broker's certificate against the host it dialled, which is what a
	// cluster of several brokers needs.
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
	err := tlsfiles.Apply(c, tlsfiles.Files{
		CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
		CAVar: "KAFKA_CA_FILE", CertVars: "KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE",
	})
	return c, err
}

func mechanism(cfg config.KafkaSASL) (sasl.Mechanism, error) {
	password := cfg.Password
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_SASL_PASSWORD_FILE: %w", err)
		}
		// A file written by `echo` or an editor ends in a newline that
		// is not part of the password.
		password = strings.TrimSpace(string(b))
		if password == "" {
			return nil, fmt.Errorf("KAFKA_SASL_PASSWORD_FILE: %s is empty", cfg.PasswordFile)
		}
	}
	switch cfg.Mechanism {
	case config.SASLPlain:
		return plain.Mechanism{Username: cfg.Username, Password: password}, nil
	case config.SASLScramSHA256, config.SASLScramSHA512:
		algo := scram.SHA256
		if cfg.Mechanism == config.SASLScramSHA512 {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, cfg.Username, password)
		if err != nil {
			// SASLprep refused the user name or password; the
			// underlying error quotes neither.
			return nil, fmt.Errorf("KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD: not usable with %s", cfg.Mechanism)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("KAFKA_SASL_MECHANISM: unknown mechanism %q", cfg.Mechanism)
	}
}

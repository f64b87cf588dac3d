package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/config"
)

// Config is everything the binary reads at start.
type Config struct {
	// Broker is passed to broker.Start; its Logger is set by run.
	Broker broker.Config
	// LogLevel is the minimum level logged; debug adds one line per
	// connection and per request.
	LogLevel slog.Level
}

// load reads the environment through lookup, then lets command-line flags
// override it; every flag's default is the variable's value, so `-h` shows
// what is in effect. A bad value is reported naming its variable or flag.
func load(args []string, lookup func(string) (string, bool), stderr io.Writer) (Config, error) {
	e := config.NewEnv(lookup)
	addr := e.HostPort("KAFKA_ADDR", broker.DefaultAddr)
	advertised := e.String("KAFKA_ADVERTISED_ADDR", "")
	topics := e.List("KAFKA_TOPICS", broker.DefaultTopics())
	partitions := e.Int("KAFKA_PARTITIONS", int(broker.DefaultPartitions))
	autoCreate := e.Bool("KAFKA_AUTO_CREATE_TOPICS", false)
	tlsCert := e.String("KAFKA_TLS_CERT_FILE", "")
	tlsKey := e.String("KAFKA_TLS_KEY_FILE", "")
	clientCA := e.String("KAFKA_TLS_CLIENT_CA_FILE", "")
	users := e.String("KAFKA_SASL_USERS", "")
	level := e.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	if err := e.Err(); err != nil {
		return Config{}, err
	}

	fs := flag.NewFlagSet("devbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addr, "addr", addr, "listen `host:port`; port 0 picks a free one (KAFKA_ADDR)")
	fs.StringVar(&advertised, "advertised-addr", advertised, "`host:port` clients are told to connect to; empty: the bound address (KAFKA_ADVERTISED_ADDR)")
	topicList := fs.String("topics", strings.Join(topics, ","), "comma-separated topics to create (KAFKA_TOPICS)")
	fs.IntVar(&partitions, "partitions", partitions, "partitions per topic (KAFKA_PARTITIONS)")
	fs.BoolVar(&autoCreate, "auto-create-topics", autoCreate, "create unknown topics on metadata requests (KAFKA_AUTO_CREATE_TOPICS)")
	fs.StringVar(&level, "log-level", level, "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&tlsCert, "tls-cert", tlsCert, "PEM `file` of the broker's certificate: serve TLS only (KAFKA_TLS_CERT_FILE)")
	fs.StringVar(&tlsKey, "tls-key", tlsKey, "PEM `file` of the certificate's key (KAFKA_TLS_KEY_FILE)")
	fs.StringVar(&clientCA, "tls-client-ca", clientCA, "PEM `file` of the CAs of client certificates: require one (mutual TLS) (KAFKA_TLS_CLIENT_CA_FILE)")
	// The flag's default is not the variable's value, so that -h never
	// prints passwords; an unset flag falls back to the variable below.
	userFlag := fs.String("sasl-users", "", "`MECHANISM:user:password,…` SASL logins (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512): require one; prefer KAFKA_SASL_USERS, a flag shows in ps")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "sasl-users" {
			users = *userFlag
		}
	})
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	topics = splitList(*topicList)
	if len(topics) == 0 {
		return Config{}, fmt.Errorf("-topics / KAFKA_TOPICS: at least one topic needed")
	}
	// The upper bound only keeps a typo from overflowing int32 or
	// allocating millions of in-memory partitions.
	if partitions < 1 || partitions > 1<<20 {
		return Config{}, fmt.Errorf("-partitions / KAFKA_PARTITIONS: must be from 1 to %d (got %d)", 1<<20, partitions)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("-log-level / LOG_LEVEL: %w", err)
	}
	tlsCfg, err := loadTLS(tlsCert, tlsKey, clientCA)
	if err != nil {
		return Config{}, err
	}
	saslUsers, err := parseUsers(users)
	if err != nil {
		return Config{}, err
	}
	cfg := Config{
		Broker: broker.Config{
			Addr:             addr,
			AdvertisedAddr:   advertised,
			Topics:           topics,
			Partitions:       int32(partitions),
			AutoCreateTopics: autoCreate,
			TLS:              tlsCfg,
			Users:            saslUsers,
		},
		LogLevel: lv,
	}
	if err := cfg.Broker.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// splitList splits a comma-separated flag value the way config.Env.List
// splits a variable: elements trimmed, empty ones dropped.
func splitList(v string) []string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

// loadTLS reads the broker's certificate and, for mutual TLS, the CAs of
// client certificates; nil when no certificate is configured (plaintext).
func loadTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "" && clientCAFile == "":
		return nil, nil
	case certFile == "" && keyFile == "":
		return nil, errors.New("-tls-client-ca / KAFKA_TLS_CLIENT_CA_FILE: needs -tls-cert and -tls-key (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE)")
	case keyFile == "":
		return nil, errors.New("-tls-key / KAFKA_TLS_KEY_FILE: required with -tls-cert / KAFKA_TLS_CERT_FILE")
	case certFile == "":
		return nil, errors.New("-tls-cert / KAFKA_TLS_CERT_FILE: required with -tls-key / KAFKA_TLS_KEY_FILE")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("-tls-cert, -tls-key / KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE: %w", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("-tls-client-ca / KAFKA_TLS_CLIENT_CA_FILE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-tls-client-ca / KAFKA_TLS_CLIENT_CA_FILE: %s holds no PEM certificate", clientCAFile)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// parseUsers parses "MECHANISM:user:password,…" (the password may contain
// ':' but not ','); the mechanism is case-insensitive. Errors never quote an
// entry, which holds a password.
func parseUsers(v string) ([]broker.User, error) {
	var users []broker.User
	seen := map[broker.User]bool{}
	for i, entry := range splitList(v) {
		parts := strings.SplitN(entry, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("-sasl-users / KAFKA_SASL_USERS: entry %d: must be MECHANISM:user:password", i+1)
		}
		u := broker.User{Mechanism: strings.ToUpper(parts[0]), Name: parts[1], Password: parts[2]}
		switch {
		case u.Mechanism != broker.SASLPlain && u.Mechanism != broker.SASLScramSHA256 && u.Mechanism != broker.SASLScramSHA512:
			return nil, fmt.Errorf("-sasl-users / KAFKA_SASL_USERS: entry %d: mechanism must be %s, %s or %s",
				i+1, broker.SASLPlain, broker.SASLScramSHA256, broker.SASLScramSHA512)
		case u.Name == "" || u.Password == "":
			return nil, fmt.Errorf("-sasl-users / KAFKA_SASL_USERS: entry %d: needs a user and a password", i+1)
		case seen[broker.User{Mechanism: u.Mechanism, Name: u.Name}]:
			return nil, fmt.Errorf("-sasl-users / KAFKA_SASL_USERS: entry %d: %s listed twice", i+1, u)
		}
		seen[broker.User{Mechanism: u.Mechanism, Name: u.Name}] = true
		users = append(users, u)
	}
	return users, nil
}

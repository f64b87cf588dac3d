package main

import (
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/mtls"
)

func TestLoad_TLSAndSASL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := mtls.NewCA("devbroker test CA", time.Hour)
	require.NoError(t, err)
	caFile := filepath.Join(dir, "ca.crt")
	require.NoError(t, os.WriteFile(caFile, ca.PEM, 0o600))
	srv, err := ca.Issue("kafka", []string{"127.0.0.1"}, time.Hour)
	require.NoError(t, err)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	require.NoError(t, srv.WriteFiles(certFile, keyFile))
	notPEM := filepath.Join(dir, "not-pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("nope"), 0o600))

	env := func(kv map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
	}

	t.Run("the environment turns on TLS, mutual TLS and SASL", func(t *testing.T) {
		cfg, err := load(nil, env(map[string]string{
			"KAFKA_TLS_CERT_FILE": certFile, "KAFKA_TLS_KEY_FILE": keyFile, "KAFKA_TLS_CLIENT_CA_FILE": caFile,
			"KAFKA_SASL_USERS": "scram-sha-512:relay:pa:ss:word, SCRAM-SHA-256:orchestrator:o,PLAIN:ops:p",
		}), io.Discard)
		require.NoError(t, err)
		c := cfg.Broker.TLS
		require.NotNil(t, c)
		require.Len(t, c.Certificates, 1)
		require.Equal(t, tls.RequireAndVerifyClientCert, c.ClientAuth)
		require.NotNil(t, c.ClientCAs)
		require.Equal(t, uint16(tls.VersionTLS12), c.MinVersion)
		require.Equal(t, []broker.User{
			{Mechanism: broker.SASLScramSHA512, Name: "relay", Password: "pa:ss:word"},
			{Mechanism: broker.SASLScramSHA256, Name: "orchestrator", Password: "o"},
			{Mechanism: broker.SASLPlain, Name: "ops", Password: "p"},
		}, cfg.Broker.Users)
	})

	t.Run("a certificate alone serves TLS without client certificates", func(t *testing.T) {
		cfg, err := load([]string{"-tls-cert", certFile, "-tls-key", keyFile}, env(nil), io.Discard)
		require.NoError(t, err)
		require.Equal(t, tls.NoClientCert, cfg.Broker.TLS.ClientAuth)
		require.Empty(t, cfg.Broker.Users)
	})

	t.Run("the flag overrides the users of the environment", func(t *testing.T) {
		cfg, err := load([]string{"-sasl-users", "PLAIN:a:b"}, env(map[string]string{"KAFKA_SASL_USERS": "PLAIN:c:d"}), io.Discard)
		require.NoError(t, err)
		require.Equal(t, []broker.User{{Mechanism: broker.SASLPlain, Name: "a", Password: "b"}}, cfg.Broker.Users)
	})

	t.Run("-h does not print the passwords of the environment", func(t *testing.T) {
		var usage strings.Builder
		_, err := load([]string{"-h"}, env(map[string]string{"KAFKA_SASL_USERS": "PLAIN:ops:hunter2"}), &usage)
		require.Error(t, err)
		require.Contains(t, usage.String(), "-sasl-users")
		require.NotContains(t, usage.String(), "hunter2")
	})

	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"a certificate without its key", nil, map[string]string{"KAFKA_TLS_CERT_FILE": certFile},
			"-tls-key / KAFKA_TLS_KEY_FILE: required with -tls-cert / KAFKA_TLS_CERT_FILE"},
		{"a key without its certificate", []string{"-tls-key", keyFile}, nil,
			"-tls-cert / KAFKA_TLS_CERT_FILE: required with -tls-key / KAFKA_TLS_KEY_FILE"},
		{"a client CA without a certificate", nil, map[string]string{"KAFKA_TLS_CLIENT_CA_FILE": caFile},
			"-tls-client-ca / KAFKA_TLS_CLIENT_CA_FILE: needs -tls-cert and -tls-key (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE)"},
		{"a key that is not one", nil, map[string]string{"KAFKA_TLS_CERT_FILE": certFile, "KAFKA_TLS_KEY_FILE": notPEM},
			"-tls-cert, -tls-key / KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE: tls: failed to find any PEM data in key input"},
		{"a client CA file without a certificate", nil, map[string]string{"KAFKA_TLS_CERT_FILE": certFile, "KAFKA_TLS_KEY_FILE": keyFile, "KAFKA_TLS_CLIENT_CA_FILE": notPEM},
			"-tls-client-ca / KAFKA_TLS_CLIENT_CA_FILE: " + notPEM + " holds no PEM certificate"},
		{"a user without a password", nil, map[string]string{"KAFKA_SASL_USERS": "PLAIN:a:b,PLAIN:ops"},
			"-sasl-users / KAFKA_SASL_USERS: entry 2: must be MECHANISM:user:password"},
		{"an empty password", []string{"-sasl-users", "PLAIN:ops:"}, nil,
			"-sasl-users / KAFKA_SASL_USERS: entry 1: needs a user and a password"},
		{"an unknown mechanism", nil, map[string]string{"KAFKA_SASL_USERS": "GSSAPI:ops:secret"},
			"-sasl-users / KAFKA_SASL_USERS: entry 1: mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"},
		{"a user listed twice", nil, map[string]string{"KAFKA_SASL_USERS": "PLAIN:ops:secret,plain:ops:secret2"},
			"-sasl-users / KAFKA_SASL_USERS: entry 2: PLAIN:ops listed twice"},
	} {
		t.Run(tc.name+" is refused, naming the setting", func(t *testing.T) {
			_, err := load(tc.args, env(tc.env), io.Discard)
			require.EqualError(t, err, tc.want)
			require.NotContains(t, err.Error(), "secret")
		})
	}
}

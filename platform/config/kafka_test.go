package config_test

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
)

func TestLoadKafka(t *testing.T) {
	t.Run("the defaults are plaintext without SASL to the development broker", func(t *testing.T) {
		k := loaded(t, nil, config.LoadKafka)
		require.Equal(t, config.Kafka{Brokers: []string{"127.0.0.1:9092"}}, k)
	})

	t.Run("a full TLS and SCRAM configuration is read as given", func(t *testing.T) {
		k := loaded(t, map[string]string{
			"KAFKA_BROKERS":         "k1:9093, k2:9093",
			"KAFKA_CA_FILE":         "/k/ca.crt",
			"KAFKA_TLS_CERT_FILE":   "/k/tls.crt",
			"KAFKA_TLS_KEY_FILE":    "/k/tls.key",
			"KAFKA_TLS_SERVER_NAME": "kafka.internal",
			"KAFKA_SASL_MECHANISM":  "scram-sha-512",
			"KAFKA_SASL_USERNAME":   "relay",
			"KAFKA_SASL_PASSWORD":   "s3cret",
		}, config.LoadKafka)
		require.Equal(t, config.Kafka{
			Brokers: []string{"k1:9093", "k2:9093"}, TLS: true,
			CAFile: "/k/ca.crt", CertFile: "/k/tls.crt", KeyFile: "/k/tls.key", ServerName: "kafka.internal",
			SASL: config.KafkaSASL{Mechanism: config.SASLScramSHA512, Username: "relay", Password: "s3cret"},
		}, k)
	})

	t.Run("TLS is implied by a CA file or a client certificate, and can be asked for alone", func(t *testing.T) {
		for _, vars := range []map[string]string{
			{"KAFKA_CA_FILE": "/k/ca.crt"},
			{"KAFKA_TLS_CERT_FILE": "/k/tls.crt", "KAFKA_TLS_KEY_FILE": "/k/tls.key"},
			{"KAFKA_TLS": "true"},
			{"KAFKA_TLS": "true", "KAFKA_CA_FILE": "/k/ca.crt"},
		} {
			e := envOf(vars)
			k := config.LoadKafka(e)
			require.NoError(t, e.Err(), "%v", vars)
			require.True(t, k.TLS, "%v", vars)
		}
	})

	t.Run("a password file stands in for the password", func(t *testing.T) {
		k := loaded(t, map[string]string{
			"KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "KAFKA_SASL_USERNAME": "relay",
			"KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
		}, config.LoadKafka)
		require.Equal(t, config.KafkaSASL{Mechanism: config.SASLScramSHA256, Username: "relay", PasswordFile: "/run/secrets/kafka"}, k.SASL)
	})

	t.Run("PLAIN is accepted over TLS", func(t *testing.T) {
		k := loaded(t, map[string]string{
			"KAFKA_TLS": "1", "KAFKA_SASL_MECHANISM": "plain", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
		}, config.LoadKafka)
		require.Equal(t, config.SASLPlain, k.SASL.Mechanism)
	})

	// Each bad combination is reported as exactly these lines.
	for _, tc := range []struct {
		name string
		vars map[string]string
		want []string
	}{
		{
			name: "a broker without a port",
			vars: map[string]string{"KAFKA_BROKERS": "k1:9092,kafka"},
			want: []string{`KAFKA_BROKERS: each broker must be "host:port" (got "kafka")`},
		},
		{
			name: "a broker with port 0",
			vars: map[string]string{"KAFKA_BROKERS": "k1:0"},
			want: []string{`KAFKA_BROKERS: port must be a number from 1 to 65535 (got "k1:0")`},
		},
		{
			name: "KAFKA_TLS that is not a boolean",
			vars: map[string]string{"KAFKA_TLS": "yes please"},
			want: []string{`KAFKA_TLS: must be true or false (got "yes please")`},
		},
		{
			name: "a client certificate without its key",
			vars: map[string]string{"KAFKA_TLS_CERT_FILE": "/k/tls.crt"},
			want: []string{"KAFKA_TLS_KEY_FILE: required with KAFKA_TLS_CERT_FILE"},
		},
		{
			name: "a client key without its certificate",
			vars: map[string]string{"KAFKA_TLS_KEY_FILE": "/k/tls.key"},
			want: []string{"KAFKA_TLS_CERT_FILE: required with KAFKA_TLS_KEY_FILE"},
		},
		{
			name: "TLS turned off beside a CA file",
			vars: map[string]string{"KAFKA_TLS": "false", "KAFKA_CA_FILE": "/k/ca.crt"},
			want: []string{"KAFKA_TLS: is false, but KAFKA_CA_FILE is set: TLS settings need TLS"},
		},
		{
			name: "TLS turned off beside a client certificate",
			vars: map[string]string{"KAFKA_TLS": "0", "KAFKA_TLS_CERT_FILE": "/k/tls.crt", "KAFKA_TLS_KEY_FILE": "/k/tls.key"},
			want: []string{"KAFKA_TLS: is false, but a client certificate (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE) is set: TLS settings need TLS"},
		},
		{
			name: "a server name without TLS",
			vars: map[string]string{"KAFKA_TLS_SERVER_NAME": "kafka.internal"},
			want: []string{"KAFKA_TLS_SERVER_NAME: needs TLS (KAFKA_TLS=true)"},
		},
		{
			name: "an unknown mechanism",
			vars: map[string]string{"KAFKA_SASL_MECHANISM": "GSSAPI", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
			want: []string{`KAFKA_SASL_MECHANISM: must be SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (got "GSSAPI")`},
		},
		{
			name: "PLAIN without TLS",
			vars: map[string]string{"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
			want: []string{"KAFKA_SASL_MECHANISM: PLAIN sends the password in clear text: it needs TLS (KAFKA_TLS=true)"},
		},
		{
			name: "a mechanism without credentials",
			vars: map[string]string{"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"},
			want: []string{
				"KAFKA_SASL_USERNAME: required with KAFKA_SASL_MECHANISM",
				"KAFKA_SASL_PASSWORD: required with KAFKA_SASL_MECHANISM (or KAFKA_SASL_PASSWORD_FILE)",
			},
		},
		{
			name: "both a password and a password file",
			vars: map[string]string{
				"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "u",
				"KAFKA_SASL_PASSWORD": "p", "KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
			},
			want: []string{"KAFKA_SASL_PASSWORD: set either KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both"},
		},
		{
			name: "credentials without a mechanism",
			vars: map[string]string{"KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
			want: []string{
				"KAFKA_SASL_USERNAME: needs KAFKA_SASL_MECHANISM (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)",
				"KAFKA_SASL_PASSWORD: needs KAFKA_SASL_MECHANISM (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)",
			},
		},
		{
			name: "a password file without a mechanism",
			vars: map[string]string{"KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka"},
			want: []string{"KAFKA_SASL_PASSWORD_FILE: needs KAFKA_SASL_MECHANISM (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)"},
		},
	} {
		t.Run(tc.name+" is refused, naming the variable", func(t *testing.T) {
			e := envOf(tc.vars)
			config.LoadKafka(e)
			err := e.Err()
			require.Error(t, err)
			require.Equal(t, tc.want, strings.Split(err.Error(), "\n"))
		})
	}

	t.Run("no error, string or log line shows the password", func(t *testing.T) {
		const secret = "hunter2-secret"
		e := envOf(map[string]string{
			"KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "relay", "KAFKA_SASL_PASSWORD": secret,
			"KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
		})
		k := config.LoadKafka(e)
		require.Error(t, e.Err())
		require.NotContains(t, e.Err().Error(), secret)
		for _, s := range []string{k.String(), k.SASL.String(), fmt.Sprintf("%v", k), fmt.Sprintf("%+v", k.SASL)} {
			require.NotContains(t, s, secret)
		}
		var log strings.Builder
		slog.New(slog.NewJSONHandler(&log, nil)).Info("kafka", "sasl", k.SASL)
		require.NotContains(t, log.String(), secret)
		require.Contains(t, log.String(), `"sasl":{"mechanism":"PLAIN","username":"relay"}`)
		require.Equal(t, `PLAIN as "relay"`, k.SASL.String())
	})
}

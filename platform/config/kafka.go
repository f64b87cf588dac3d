package config

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
)

// SASL mechanisms of KAFKA_SASL_MECHANISM, as Kafka names them.
const (
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	SASLPlain       = "PLAIN"
)

// DefaultKafkaBrokers is where Kafka is looked for when KAFKA_BROKERS is
// unset: the development broker (devbroker) on this machine.
const DefaultKafkaBrokers = "127.0.0.1:9092"

// Kafka is how a binary reaches Kafka: the bootstrap brokers, TLS and SASL.
// The defaults are a plaintext, unauthenticated connection to the
// development broker. The files named here are read by platform/kafkaconn
// when the binary starts.
type Kafka struct {
	// Brokers are the bootstrap brokers, "host:port" each (KAFKA_BROKERS,
	// comma-separated; default 127.0.0.1:9092).
	Brokers []string
	// TLS encrypts every connection, at least TLS 1.2 (KAFKA_TLS; implied
	// by KAFKA_CA_FILE or a client certificate).
	TLS bool
	// CAFile holds the PEM certificates that may issue the brokers'
	// certificates (KAFKA_CA_FILE; unset: the system roots).
	CAFile string
	// CertFile and KeyFile are the client certificate and key presented to
	// brokers that require one (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE;
	// both or neither).
	CertFile, KeyFile string
	// ServerName is the name checked against every broker's certificate
	// (KAFKA_TLS_SERVER_NAME; unset: the host of each broker dialled).
	ServerName string
	// SASL authenticates each connection (KAFKA_SASL_*); its zero value
	// authenticates nothing.
	SASL KafkaSASL
}

// KafkaSASL is the SASL login of a Kafka client. Its String and LogValue
// never show the password.
type KafkaSASL struct {
	// Mechanism is SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN, or empty for no
	// SASL (KAFKA_SASL_MECHANISM). PLAIN is refused without TLS.
	Mechanism string
	// Username is the SASL user (KAFKA_SASL_USERNAME).
	Username string
	// Password (KAFKA_SASL_PASSWORD) or PasswordFile
	// (KAFKA_SASL_PASSWORD_FILE, read at start; a trailing newline is
	// ignored): exactly one is set when Mechanism is. Surrounding white
	// space is not part of the password.
	Password     string
	PasswordFile string
}

// String describes s without its password.
func (s KafkaSASL) String() string {
	if s.Mechanism == "" {
		return "none"
	}
	return s.Mechanism + " as " + strconv.Quote(s.Username)
}

// LogValue logs s without its password.
func (s KafkaSASL) LogValue() slog.Value {
	return slog.GroupValue(slog.String("mechanism", s.Mechanism), slog.String("username", s.Username))
}

// LoadKafka reads KAFKA_BROKERS, the TLS settings KAFKA_TLS, KAFKA_CA_FILE,
// KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE and KAFKA_TLS_SERVER_NAME, and the
// SASL settings KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and
// KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE. Problems are recorded in
// e, named by variable; no message carries a password.
func LoadKafka(e *Env) Kafka {
	k := Kafka{
		Brokers:    e.List("KAFKA_BROKERS", []string{DefaultKafkaBrokers}),
		CAFile:     e.String("KAFKA_CA_FILE", ""),
		CertFile:   e.String("KAFKA_TLS_CERT_FILE", ""),
		KeyFile:    e.String("KAFKA_TLS_KEY_FILE", ""),
		ServerName: e.String("KAFKA_TLS_SERVER_NAME", ""),
	}
	for _, b := range k.Brokers {
		if err := brokerAddr(b); err != "" {
			e.invalid("KAFKA_BROKERS", b, err)
		}
	}

	switch {
	case k.CertFile != "" && k.KeyFile == "":
		e.Invalid("KAFKA_TLS_KEY_FILE", "required with KAFKA_TLS_CERT_FILE")
	case k.KeyFile != "" && k.CertFile == "":
		e.Invalid("KAFKA_TLS_CERT_FILE", "required with KAFKA_TLS_KEY_FILE")
	}
	implied := ""
	switch {
	case k.CAFile != "":
		implied = "KAFKA_CA_FILE"
	case k.CertFile != "" || k.KeyFile != "":
		implied = "a client certificate (KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE)"
	}
	_, tlsSet := e.raw("KAFKA_TLS")
	k.TLS = e.Bool("KAFKA_TLS", false)
	switch {
	case implied != "" && tlsSet && !k.TLS:
		// An explicit "no TLS" beside TLS files is a contradiction,
		// not something to resolve silently either way.
		e.Invalid("KAFKA_TLS", "is false, but "+implied+" is set: TLS settings need TLS")
	case implied != "":
		k.TLS = true
	}
	if k.ServerName != "" && !k.TLS {
		e.Invalid("KAFKA_TLS_SERVER_NAME", "needs TLS (KAFKA_TLS=true)")
	}

	k.SASL = loadKafkaSASL(e, k.TLS)
	return k
}

func loadKafkaSASL(e *Env, tls bool) KafkaSASL {
	s := KafkaSASL{
		Username:     e.String("KAFKA_SASL_USERNAME", ""),
		Password:     e.String("KAFKA_SASL_PASSWORD", ""),
		PasswordFile: e.String("KAFKA_SASL_PASSWORD_FILE", ""),
	}
	if v, ok := e.raw("KAFKA_SASL_MECHANISM"); ok {
		switch m := strings.ToUpper(v); m {
		case SASLScramSHA256, SASLScramSHA512, SASLPlain:
			s.Mechanism = m
		default:
			e.invalid("KAFKA_SASL_MECHANISM", v, "must be SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
			return s
		}
	}
	if s.Mechanism == "" {
		// Credentials without a mechanism would be silently unused, and
		// the binary would connect unauthenticated.
		for _, v := range [][2]string{
			{"KAFKA_SASL_USERNAME", s.Username}, {"KAFKA_SASL_PASSWORD", s.Password},
			{"KAFKA_SASL_PASSWORD_FILE", s.PasswordFile},
		} {
			if v[1] != "" {
				e.Invalid(v[0], "needs KAFKA_SASL_MECHANISM (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN)")
			}
		}
		return s
	}
	if s.Mechanism == SASLPlain && !tls {
		e.Invalid("KAFKA_SASL_MECHANISM", "PLAIN sends the password in clear text: it needs TLS (KAFKA_TLS=true)")
	}
	if s.Username == "" {
		e.Invalid("KAFKA_SASL_USERNAME", "required with KAFKA_SASL_MECHANISM")
	}
	switch {
	case s.Password != "" && s.PasswordFile != "":
		e.Invalid("KAFKA_SASL_PASSWORD", "set either KAFKA_SASL_PASSWORD or KAFKA_SASL_PASSWORD_FILE, not both")
	case s.Password == "" && s.PasswordFile == "":
		e.Invalid("KAFKA_SASL_PASSWORD", "required with KAFKA_SASL_MECHANISM (or KAFKA_SASL_PASSWORD_FILE)")
	}
	return s
}

// brokerAddr returns what is wrong with a bootstrap broker address, or "".
func brokerAddr(b string) string {
	host, port, err := net.SplitHostPort(b)
	if err != nil || host == "" {
		return `each broker must be "host:port"`
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "port must be a number from 1 to 65535"
	}
	return ""
}

// String describes k for logs: brokers, TLS and SASL, without secrets.
func (k Kafka) String() string {
	return fmt.Sprintf("brokers=%s tls=%t sasl=%s", strings.Join(k.Brokers, ","), k.TLS, k.SASL)
}

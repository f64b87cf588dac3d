package broker

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SASL mechanisms a User may log in with, as Kafka names them.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// User is a SASL login the broker accepts. As in Kafka, a user logs in only
// with the mechanism it was created for (a SCRAM-SHA-256 user cannot log in
// with SCRAM-SHA-512), and a wrong password, an unknown user or any request
// other than ApiVersions and the SASL exchange before a login closes the
// connection. There are no ACLs: a logged-in user may do everything.
type User struct {
	// Mechanism is SASLPlain, SASLScramSHA256 or SASLScramSHA512.
	Mechanism string
	// Name and Password are the credentials.
	Name, Password string
}

// String names u without its password.
func (u User) String() string { return u.Mechanism + ":" + u.Name }

// validateSecurity reports the problems with c's TLS and users; no message
// carries a password.
func (c Config) validateSecurity() []error {
	var errs []error
	if c.TLS != nil && len(c.TLS.Certificates) == 0 && c.TLS.GetCertificate == nil && c.TLS.GetConfigForClient == nil {
		errs = append(errs, errors.New("tls: no server certificate"))
	}
	seen := map[User]bool{}
	for i, u := range c.Users {
		switch {
		case u.Mechanism != SASLPlain && u.Mechanism != SASLScramSHA256 && u.Mechanism != SASLScramSHA512:
			errs = append(errs, fmt.Errorf("user %d: mechanism %q: must be %s, %s or %s", i+1, u.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512))
		case u.Name == "" || u.Password == "":
			errs = append(errs, fmt.Errorf("user %d (%s): needs a name and a password", i+1, u))
		case seen[User{Mechanism: u.Mechanism, Name: u.Name}]:
			errs = append(errs, fmt.Errorf("user %d (%s): listed twice", i+1, u))
		}
		seen[User{Mechanism: u.Mechanism, Name: u.Name}] = true
	}
	return errs
}

// serverTLS is c.TLS with TLS 1.2 the least version accepted; nil for
// plaintext.
func (c Config) serverTLS() *tls.Config {
	if c.TLS == nil {
		return nil
	}
	tc := c.TLS.Clone()
	tc.MinVersion = max(tc.MinVersion, tls.VersionTLS12)
	return tc
}

// securityOpts are kfake's options for c's users.
func (c Config) securityOpts() []kfake.Opt {
	// TLS is not kfake's (kfake.TLS): the listener terminates it, so that
	// saslConn sees the protocol in clear.
	var opts []kfake.Opt
	if len(c.Users) > 0 {
		// EnableSASL without users would let kfake invent an
		// admin/admin login; Users is never empty here, so only the
		// configured logins exist. Superuser rather than User: without
		// ACLs both may do everything, and a superuser stays so if ACLs
		// are ever turned on.
		opts = append(opts, kfake.EnableSASL())
		for _, u := range c.Users {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.Name, u.Password))
		}
	}
	return opts
}

// securityLog are the "listening" line's attributes describing TLS and
// SASL: whether TLS is on, whether client certificates are required, and
// the logins (mechanism and name, never the password).
func (c Config) securityLog() []any {
	attrs := []any{"tls", c.TLS != nil}
	if c.TLS != nil {
		attrs = append(attrs, "client_auth", c.TLS.ClientAuth.String())
	}
	if len(c.Users) > 0 {
		users := make([]string, len(c.Users))
		for i, u := range c.Users {
			users[i] = u.String()
		}
		attrs = append(attrs, "sasl_users", strings.Join(users, ","))
	}
	return attrs
}

// saslConn makes a failed login look to the client as it does with Kafka.
// kfake refuses a wrong password or an unknown user by closing the
// connection without answering the SaslAuthenticate request; Kafka first
// answers it with SASL_AUTHENTICATION_FAILED (error 58), so clients report
// an authentication error rather than an unexpected end of stream.
// saslConn watches the request and response frames (key, version and
// correlation id only) and, when the connection is closed with a
// SaslAuthenticate request unanswered, sends that answer first. It lets
// nothing through that kfake refuses: it only adds the error response.
type saslConn struct {
	net.Conn

	requests  frames // read by kfake's reader goroutine only
	responses frames // written by kfake's writer goroutine only

	mu        sync.Mutex // held while writing to the connection
	pendingMu sync.Mutex
	pending   map[int32]int16 // unanswered SaslAuthenticate: correlation id → version
	closeOnce sync.Once
	closeErr  error
}

func newSASLConn(c net.Conn) *saslConn {
	sc := &saslConn{Conn: c, pending: map[int32]int16{}}
	sc.requests = frames{header: 8, onHeader: sc.request}
	sc.responses = frames{header: 4, onHeader: sc.response}
	return sc
}

func (c *saslConn) request(h []byte) {
	if int16(binary.BigEndian.Uint16(h[0:2])) != kmsg.SASLAuthenticate.Int16() {
		return
	}
	c.pendingMu.Lock()
	c.pending[int32(binary.BigEndian.Uint32(h[4:8]))] = int16(binary.BigEndian.Uint16(h[2:4]))
	c.pendingMu.Unlock()
}

func (c *saslConn) response(h []byte) {
	c.pendingMu.Lock()
	delete(c.pending, int32(binary.BigEndian.Uint32(h)))
	c.pendingMu.Unlock()
}

func (c *saslConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.requests.feed(p[:n])
	return n, err
}

func (c *saslConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.responses.feed(p)
	return c.Conn.Write(p)
}

// The answer to a failed login: Kafka's error code
// SASL_AUTHENTICATION_FAILED and its wording.
const (
	saslAuthenticationFailed int16 = 58
	authFailedMessage              = "Authentication failed: Invalid username or password"
)

func (c *saslConn) Close() error {
	c.closeOnce.Do(func() {
		c.pendingMu.Lock()
		var (
			corr    int32
			version int16 = -1
		)
		for k, v := range c.pending {
			corr, version = k, v
		}
		c.pendingMu.Unlock()
		// A write in progress means kfake is answering, not refusing;
		// never interleave with it.
		if version >= 0 && c.mu.TryLock() {
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Conn.Write(authFailed(corr, version))
			c.mu.Unlock()
		}
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// authFailed is the frame of a SaslAuthenticate response of version with
// SASL_AUTHENTICATION_FAILED, as Kafka sends it.
func authFailed(corr int32, version int16) []byte {
	msg := authFailedMessage
	resp := kmsg.NewPtrSASLAuthenticateResponse()
	resp.Version = version
	resp.ErrorCode = saslAuthenticationFailed
	resp.ErrorMessage = &msg
	buf := binary.BigEndian.AppendUint32(make([]byte, 4), uint32(corr))
	if resp.IsFlexible() {
		buf = append(buf, 0) // the response header's empty tagged fields
	}
	buf = resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf[:4], uint32(len(buf)-4))
	return buf
}

// frames follows a stream of Kafka frames (a 4-byte size, then the
// frame) and calls onHeader with the first header bytes of each: for a
// request key, version and correlation id (8 bytes), for a response the
// correlation id (4).
type frames struct {
	header   int
	onHeader func([]byte)
	prefix   []byte // the size and header bytes of the current frame so far
	skip     int    // bytes of the current frame still to pass
}

func (f *frames) feed(b []byte) {
	for len(b) > 0 {
		if f.skip > 0 {
			n := min(f.skip, len(b))
			f.skip -= n
			b = b[n:]
			continue
		}
		n := min(4+f.header-len(f.prefix), len(b))
		f.prefix = append(f.prefix, b[:n]...)
		b = b[n:]
		if len(f.prefix) < 4+f.header {
			return
		}
		f.onHeader(f.prefix[4:])
		f.skip = max(0, int(binary.BigEndian.Uint32(f.prefix[:4]))-f.header)
		f.prefix = f.prefix[:0]
	}
}

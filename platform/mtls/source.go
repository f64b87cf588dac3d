// Package mtls gives every GoodGo binary its identity: a certificate whose
// URI SAN is a SPIFFE ID (spiffe://goodgo/<service>), issued by the
// deployment's CA, read from files (Kubernetes Secrets written by
// cert-manager, or the development PKI of `goodgoctl dev init`) and reloaded
// when the files change, without a restart.
//
// Servers request a client certificate but do not require one, because end
// users' clients call with a bearer token instead; a certificate that is
// presented is verified against the CA once per connection, and the result
// travels with the connection ([AuthInfo]) to the authorization
// interceptor, which refuses a bad certificate with Unauthenticated naming
// the problem. Clients of other services verify the server's certificate
// against the CA and its SPIFFE ID against the service they meant to reach,
// not a host name: the identity, not the address, is what is trusted.
package mtls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/goodgo/goodgo/platform/logs"
)

// TrustDomain is the SPIFFE trust domain of GoodGo's identities.
const TrustDomain = "goodgo"

// ID returns the SPIFFE ID of service: spiffe://goodgo/<service>.
func ID(service string) string { return "spiffe://" + TrustDomain + "/" + service }

// ServiceOf returns the service named by cert's SPIFFE ID, its only URI SAN
// of the form spiffe://goodgo/<service>.
func ServiceOf(cert *x509.Certificate) (string, error) {
	var found []*url.URL
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" {
			found = append(found, u)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("certificate has %d SPIFFE IDs, want exactly one", len(found))
	}
	u := found[0]
	name := strings.TrimPrefix(u.Path, "/")
	if u.Host != TrustDomain || name == "" || strings.Contains(name, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("SPIFFE ID %q is not spiffe://%s/<service>", u.String(), TrustDomain)
	}
	return name, nil
}

// Files names the PEM files of a binary's identity: its certificate chain
// (leaf first), its private key and the CA bundle it trusts. cert-manager
// writes them as tls.crt, tls.key and ca.crt.
type Files struct {
	Cert, Key, CA string
}

// reloadEvery bounds how often the files are checked for a change.
const reloadEvery = time.Second

// Source is a binary's current identity: certificate, key and CA pool,
// reloaded from Files when they change (checked at most once a second,
// when a handshake or a caller needs them). A reload that fails (a key
// written before its certificate, say) keeps the previous identity and is
// retried at the next check. Safe for concurrent use.
type Source struct {
	files  Files
	logger *slog.Logger
	now    func() time.Time

	cur       atomic.Pointer[identity]
	mu        sync.Mutex // serialises reloads
	nextCheck atomic.Int64
}

// identity is one loaded generation of the files.
type identity struct {
	cert    *tls.Certificate
	leaf    *x509.Certificate
	service string
	pool    *x509.CertPool
	raw     [3][]byte // file contents, to tell a real change
}

// Load reads files and returns a Source for them. Errors name the file and
// the problem; the certificate must carry a GoodGo SPIFFE ID and be signed
// by the CA in files.CA. A nil logger discards logs.
func Load(files Files, logger *slog.Logger) (*Source, error) {
	logger = logs.OrDiscard(logger)
	s := &Source{files: files, logger: logger, now: time.Now}
	id, err := s.read()
	if err != nil {
		return nil, err
	}
	s.cur.Store(id)
	s.nextCheck.Store(s.now().Add(reloadEvery).UnixNano())
	return s, nil
}

// read loads and checks the three files.
func (s *Source) read() (*identity, error) {
	var id identity
	for i, name := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		if name == "" {
			return nil, errors.New("mtls: certificate, key and CA files are all required")
		}
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("mtls: read %s: %w", name, err)
		}
		id.raw[i] = b
	}
	cert, err := tls.X509KeyPair(id.raw[0], id.raw[1])
	if err != nil {
		return nil, fmt.Errorf("mtls: %s with %s: %w", s.files.Cert, s.files.Key, err)
	}
	id.cert = &cert
	id.leaf = cert.Leaf
	id.pool = x509.NewCertPool()
	if !id.pool.AppendCertsFromPEM(id.raw[2]) {
		return nil, fmt.Errorf("mtls: %s holds no PEM certificate", s.files.CA)
	}
	if id.service, err = ServiceOf(id.leaf); err != nil {
		return nil, fmt.Errorf("mtls: %s: %w", s.files.Cert, err)
	}
	if _, err := verify(id.pool, id.leaf, intermediates(cert.Certificate), x509.ExtKeyUsageAny, time.Now()); err != nil {
		// For the operator: the x509 detail too.
		return nil, fmt.Errorf("mtls: %s is not signed by a CA in %s: %w (%w)", s.files.Cert, s.files.CA, err, errors.Unwrap(err))
	}
	return &id, nil
}

// current returns the identity, reloading the files first when the check
// is due and they changed.
func (s *Source) current() *identity {
	now := s.now().UnixNano()
	if now < s.nextCheck.Load() || !s.mu.TryLock() {
		return s.cur.Load()
	}
	defer s.mu.Unlock()
	s.nextCheck.Store(now + int64(reloadEvery))
	old := s.cur.Load()
	if !s.changed(old) {
		return old
	}
	id, err := s.read()
	if err != nil {
		s.logger.Warn("mtls: certificate files changed but cannot be loaded; keeping the previous identity", "error", err)
		return old
	}
	if id.service != old.service {
		s.logger.Error("mtls: reloaded certificate names another service; keeping the previous identity",
			"was", old.service, "now", id.service)
		return old
	}
	s.cur.Store(id)
	s.logger.Info("mtls: certificate reloaded", "service", id.service, "not_after", id.leaf.NotAfter)
	return id
}

func (s *Source) changed(old *identity) bool {
	for i, name := range []string{s.files.Cert, s.files.Key, s.files.CA} {
		b, err := os.ReadFile(name)
		if err != nil || !bytes.Equal(b, old.raw[i]) {
			return true
		}
	}
	return false
}

// Service is the name in this binary's own SPIFFE ID.
func (s *Source) Service() string { return s.cur.Load().service }

// Certificate returns the current certificate (chain and private key) and
// its parsed leaf, for signing on-behalf-of assertions.
func (s *Source) Certificate() (*tls.Certificate, *x509.Certificate) {
	id := s.current()
	return id.cert, id.leaf
}

// VerifyChain verifies a peer's certificate chain (leaf first, as sent in
// a handshake or an assertion's x5c header) against the current CA for
// usage, and returns the service its SPIFFE ID names.
func (s *Source) VerifyChain(chain []*x509.Certificate, usage x509.ExtKeyUsage) (string, error) {
	if len(chain) == 0 {
		return "", errors.New("no certificate")
	}
	pool := x509.NewCertPool()
	for _, c := range chain[1:] {
		pool.AddCert(c)
	}
	return verify(s.current().pool, chain[0], pool, usage, s.now())
}

func verify(roots *x509.CertPool, leaf *x509.Certificate, inter *x509.CertPool, usage x509.ExtKeyUsage, now time.Time) (string, error) {
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage},
	}); err != nil {
		return "", &CertError{Reason: reason(err), Detail: err}
	}
	return ServiceOf(leaf)
}

// CertError is a certificate that does not verify. Its text is fit for the
// peer (it names the kind of problem, not our CA's details); Detail, for
// the log, is the x509 error.
type CertError struct {
	Reason string
	Detail error
}

func (e *CertError) Error() string { return "certificate not trusted: " + e.Reason }

func (e *CertError) Unwrap() error { return e.Detail }

// reason names the kind of an x509 verification error.
func reason(err error) string {
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return "expired or not yet valid"
		case x509.IncompatibleUsage:
			return "not issued for this use"
		}
	}
	return "not issued by a trusted CA"
}

// intermediates parses the chain's certificates after the leaf.
func intermediates(der [][]byte) *x509.CertPool {
	pool := x509.NewCertPool()
	for _, b := range der[min(1, len(der)):] {
		if c, err := x509.ParseCertificate(b); err == nil {
			pool.AddCert(c)
		}
	}
	return pool
}

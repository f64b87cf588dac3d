package security

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// Services are the GoodGo binaries, each with its own certificate.
var Services = []string{"order", "payment", "inventory", "orchestrator", "outbox-relay"}

// Lifetimes of the development credentials. Service certificates are
// renewed by running InitDev again, which keeps the CA.
const (
	DevCATTL   = 10 * 365 * 24 * time.Hour
	DevCertTTL = 365 * 24 * time.Hour
)

// InitDev writes the development credentials under p.Dir: a CA (kept if
// present), a certificate for each of services valid for every host in
// hosts as well as the service's own name, localhost, 127.0.0.1 and ::1
// (always issued anew: running it again renews them, and running binaries
// reload them), and the token issuer's key and public key set (kept if
// present). These are for development only: GOODGO_MODE=development reads
// them by default, production refuses to start without explicit ones.
func InitDev(p config.DevPaths, services, hosts []string) error {
	for _, d := range []string{filepath.Dir(p.CA()), filepath.Dir(p.JWKS())} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("security: %w", err)
		}
	}
	ca, err := mtls.LoadCA(p.CA(), p.CAKey())
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = newDevCA(p)
	}
	if err != nil {
		return err
	}
	for _, s := range services {
		issued, err := ca.Issue(s, append([]string{s, "localhost", "127.0.0.1", "::1"}, hosts...), DevCertTTL)
		if err != nil {
			return err
		}
		if err := issued.WriteFiles(p.Cert(s), p.Key(s)); err != nil {
			return err
		}
	}
	if _, err := os.Stat(p.IssuerKey()); err == nil {
		return nil
	}
	iss, err := token.NewIssuer(config.DevIssuer, config.DevAudience, "dev-"+time.Now().UTC().Format("20060102"))
	if err != nil {
		return err
	}
	priv, err := iss.PrivateJWK()
	if err != nil {
		return err
	}
	jwks, err := iss.PublicJWKS()
	if err != nil {
		return err
	}
	if err := mtls.WriteFileAtomic(p.IssuerKey(), priv, 0o600); err != nil {
		return err
	}
	return mtls.WriteFileAtomic(p.JWKS(), jwks, 0o644)
}

func newDevCA(p config.DevPaths) (*mtls.CA, error) {
	ca, err := mtls.NewCA("GoodGo development CA", DevCATTL)
	if err != nil {
		return nil, err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return nil, err
	}
	if err := mtls.WriteFileAtomic(p.CAKey(), key, 0o600); err != nil {
		return nil, err
	}
	if err := mtls.WriteFileAtomic(p.CA(), ca.PEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// DevIssuer is the development token issuer InitDev wrote under p.Dir.
func DevIssuer(p config.DevPaths) (*token.Issuer, error) {
	return token.LoadIssuer(config.DevIssuer, config.DevAudience, p.IssuerKey())
}

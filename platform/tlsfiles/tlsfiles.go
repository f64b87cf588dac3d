// Package tlsfiles fills a TLS client configuration from files, the way
// every backing-service client here takes them (Redis, Kafka): a CA bundle
// read at start, and a client certificate re-read when either of its files
// changes, so that a certificate renewed in place (cert-manager) is used
// without a restart.
package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Files names a client's TLS files, and the settings that name them, for
// errors ("REDIS_CA_FILE"; "REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE").
type Files struct {
	CAFile, CertFile, KeyFile string
	CAVar, CertVars           string
}

// Apply sets c.RootCAs from the CA file (when set) and
// c.GetClientCertificate from the certificate and key (when set), loading
// both once now so that a missing or bad file is an error at start. Errors
// name the setting.
func Apply(c *tls.Config, f Files) error {
	var errs []error
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.CAVar, err))
		} else {
			roots := x509.NewCertPool()
			if !roots.AppendCertsFromPEM(pem) {
				errs = append(errs, fmt.Errorf("%s: %s holds no PEM certificate", f.CAVar, f.CAFile))
			}
			c.RootCAs = roots
		}
	}
	if f.CertFile != "" || f.KeyFile != "" {
		kp := &keyPair{certFile: f.CertFile, keyFile: f.KeyFile, vars: f.CertVars}
		if _, err := kp.get(); err != nil {
			errs = append(errs, err)
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return errors.Join(errs...)
}

// keyPair is the client certificate, re-read when either file's
// modification time changes. A renewal caught half-written keeps the
// previous pair until the files match again.
type keyPair struct {
	certFile, keyFile, vars string

	mu              sync.Mutex
	cert            *tls.Certificate
	certMod, keyMod time.Time
}

func (k *keyPair) get() (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	certMod, certErr := modTime(k.certFile)
	keyMod, keyErr := modTime(k.keyFile)
	if k.cert != nil && (certErr != nil || keyErr != nil || (certMod.Equal(k.certMod) && keyMod.Equal(k.keyMod))) {
		return k.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		if k.cert != nil {
			return k.cert, nil
		}
		return nil, fmt.Errorf("%s: %w", k.vars, err)
	}
	k.cert, k.certMod, k.keyMod = &cert, certMod, keyMod
	return k.cert, nil
}

func modTime(name string) (time.Time, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

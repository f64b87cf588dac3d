package redisclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/goodgo/goodgo/platform/config"
)

// tlsConfig completes the TLS settings go-redis parsed from a rediss:// URL
// (base; nil for redis://, which stays plaintext and takes no TLS
// settings) with cfg's files. A cluster client dials many nodes with one
// config, so it leaves ServerName empty unless cfg names one: crypto/tls
// then checks each node's certificate against the host it dialled.
func tlsConfig(base *tls.Config, cfg config.Redis, cluster bool) (*tls.Config, error) {
	if base == nil {
		if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" || cfg.ServerName != "" {
			return nil, errors.New("redis: REDIS_CA_FILE, REDIS_TLS_*: TLS settings need a rediss:// REDIS_URL")
		}
		return nil, nil
	}
	c := base.Clone()
	c.MinVersion = max(c.MinVersion, tls.VersionTLS12)
	if cluster {
		c.ServerName = ""
	}
	if cfg.ServerName != "" {
		c.ServerName = cfg.ServerName
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis: REDIS_CA_FILE: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: REDIS_CA_FILE: %s holds no PEM certificate", cfg.CAFile)
		}
		c.RootCAs = roots
	}
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		kp := &keyPair{certFile: cfg.CertFile, keyFile: cfg.KeyFile}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return c, nil
}

// keyPair is the client certificate, re-read when either file's
// modification time changes (cert-manager renews it in place). A renewal
// caught half-written keeps the previous pair until the files match again.
type keyPair struct {
	certFile, keyFile string

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
		return nil, fmt.Errorf("redis: REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE: %w", err)
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

// isCertError reports a server certificate that did not verify: an unknown
// issuer, another host's name, an expired certificate. Retrying will not
// change the answer, and the operator needs to see it at once.
func isCertError(err error) bool {
	var (
		verify   *tls.CertificateVerificationError
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

package redisclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/tlsfiles"
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
	err := tlsfiles.Apply(c, tlsfiles.Files{
		CAFile: cfg.CAFile, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile,
		CAVar: "REDIS_CA_FILE", CertVars: "REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE",
	})
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	return c, nil
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

package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/goodgo/goodgo/platform/keyring"
)

// KeySet is a set of named secret keys with one active key: the shape of
// every rotating secret here (version-token HMAC keys, AES-256-GCM keys for
// PII and saga context). Readers accept every key; writers use Active.
type KeySet struct {
	Keys   map[string][]byte
	Active string
	// Dev reports that the variable was unset and the public development
	// key is in use; the binary should log a warning.
	Dev bool
}

// KeySet reads keysName as "kid:base64key,…" (standard base64, padded or
// not), each key at least minLen bytes, and activeName as the active key id
// (default: the only key id). When keysName is unset, devSpec is used and
// Dev is set. Errors never contain key material.
func (e *Env) KeySet(keysName, activeName, devSpec string, minLen int) KeySet {
	spec, set := e.raw(keysName)
	ks := KeySet{Dev: !set}
	if !set {
		spec = devSpec
	}
	keys, err := ParseKeys(spec, minLen)
	if err != nil {
		e.Invalid(keysName, err.Error())
		return ks
	}
	ks.Keys = keys
	def := ""
	if len(keys) == 1 {
		for kid := range keys {
			def = kid
		}
	}
	ks.Active = e.String(activeName, def)
	switch {
	case ks.Active == "":
		e.Invalid(activeName, "required when there are several keys")
	case keys[ks.Active] == nil:
		e.Invalid(activeName, fmt.Sprintf("key id %q is not among the keys of %s", ks.Active, keysName))
		ks.Active = ""
	}
	return ks
}

// ParseKeys parses "kid:base64key,…". Each key must be at least minLen
// bytes and each key id unique. Errors name the key id, never the key.
func ParseKeys(spec string, minLen int) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	for i, entry := range strings.Split(spec, ",") {
		kid, encoded, ok := strings.Cut(strings.TrimSpace(entry), ":")
		kid = strings.TrimSpace(kid)
		if !ok || kid == "" {
			return nil, fmt.Errorf("entry %d is not kid:base64key", i+1)
		}
		if _, dup := keys[kid]; dup {
			return nil, fmt.Errorf("key id %q appears twice", kid)
		}
		encoded = strings.TrimSpace(encoded)
		enc := base64.StdEncoding
		if !strings.HasSuffix(encoded, "=") {
			enc = base64.RawStdEncoding
		}
		key, err := enc.DecodeString(encoded)
		if err != nil {
			return nil, fmt.Errorf("key %q is not valid base64", kid)
		}
		if len(key) < minLen {
			return nil, fmt.Errorf("key %q is %d bytes, need at least %d", kid, len(key), minLen)
		}
		keys[kid] = key
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// Public development keys, the defaults of every binary so that a local run
// works out of the box; a binary using one logs a warning. They are the same
// everywhere so that, for example, the outbox relay opens what the services
// seal. Never use them in production.
const (
	DevVersionTokenKeys = "dev:Z29vZGdvLWRldi12ZXJzaW9uLXRva2VuLWtleS0wMDE=" //nolint:gosec // public by design, see above
	DevEncryptionKeys   = "dev:Z29vZGdvLWRldi1vdXRib3gtcGlpLWtleS0wMDAwMDE=" //nolint:gosec // public by design, see above
)

// Keyring reads an AES-256-GCM keyring from keysName and activeName as
// KeySet does (keys of exactly 32 bytes), and reports whether the public
// development key is in use.
func (e *Env) Keyring(keysName, activeName, devSpec string) (*keyring.Keyring, bool) {
	ks := e.KeySet(keysName, activeName, devSpec, keyring.KeySize)
	if ks.Active == "" {
		return nil, ks.Dev // the problem is already recorded
	}
	kr, err := keyring.New(ks.Active, ks.Keys)
	if err != nil {
		e.Invalid(keysName, err.Error())
	}
	return kr, ks.Dev
}

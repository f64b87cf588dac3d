package config

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"

	"github.com/goodgo/goodgo/platform/keyring"
)

// KeySet is a set of named secret keys with one active key: the shape of
// every rotating secret here (version-token HMAC keys, AES-256-GCM keys for
// PII and saga context). Readers accept every key; writers use Active.
type KeySet struct {
	Keys   map[string][]byte
	Active string
	// Dev reports that the variable was unset and the public development
	// key is in use (development mode only).
	Dev bool
}

// Purpose is one kind of secret key set: its variables, its public
// development key and the least key length. Each kind of data has its own
// keys, so that one leaked key does not open the rest.
type Purpose struct {
	// Keys is the variable of the "kid:base64key,…" list; Active names the
	// variable of the active key id.
	Keys, Active string
	// Dev is the public development key set, the default in development
	// mode only.
	Dev string
	// MinLen is the least key length in bytes.
	MinLen int
}

// The purposes of GoodGo's keys.
var (
	// PIIKeys seal personal data at rest in a service's own stores: the
	// orders table, replies kept for idempotent replay in Redis and parked
	// inbox payloads. Each service has its own.
	PIIKeys = Purpose{Keys: "PII_KEYS", Active: "PII_ACTIVE_KEY", Dev: DevPIIKeys, MinLen: keyring.KeySize}
	// OutboxKeys seal PII event payloads in the outbox; the services that
	// write them and the relay that opens them share these.
	OutboxKeys = Purpose{Keys: "OUTBOX_KEYS", Active: "OUTBOX_ACTIVE_KEY", Dev: DevOutboxKeys, MinLen: keyring.KeySize}
	// SagaContextKeys seal the orchestrator's saga contexts.
	SagaContextKeys = Purpose{Keys: "SAGA_CONTEXT_KEYS", Active: "SAGA_CONTEXT_ACTIVE_KEY", Dev: DevSagaContextKeys, MinLen: keyring.KeySize}
	// VersionTokenKeys sign the version tokens clients hold (HMAC-SHA256).
	VersionTokenKeys = Purpose{Keys: "VERSION_TOKEN_KEYS", Active: "VERSION_TOKEN_ACTIVE_KEY", Dev: DevVersionTokenKeys, MinLen: 32}
)

// Keys reads the key set of purpose p. In development mode (dev) an unset
// variable takes the public development key and Dev is set. In production
// mode a missing key set, or one holding any public development key, is a
// problem naming the variable. In both modes a key already read for another
// purpose through this Env is refused: one key must not open two kinds of
// data. Errors never contain key material.
func (e *Env) Keys(p Purpose, dev bool) KeySet {
	spec, set := e.raw(p.Keys)
	ks := KeySet{Dev: !set}
	if !set {
		if !dev {
			e.Invalid(p.Keys, "required in production mode (generate a key with `goodgoctl keys new`; GOODGO_MODE=development allows the public development key)")
			return ks
		}
		spec = p.Dev
	}
	keys, err := keyring.ParseKeys(spec, p.MinLen)
	if err != nil {
		e.Invalid(p.Keys, err.Error())
		return ks
	}
	if set && !dev {
		for kid, key := range keys {
			if isDevKey(key) {
				e.Invalid(p.Keys, fmt.Sprintf("key %q is a public development key, refused in production mode", kid))
				return ks
			}
		}
	}
	for kid, key := range keys {
		if other, dup := e.keyUse(p.Keys, key); dup {
			e.Invalid(p.Keys, fmt.Sprintf("key %q is also a key of %s: each purpose needs its own keys", kid, other))
			return ks
		}
	}
	ks.Keys = keys
	def := ""
	if len(keys) == 1 {
		for kid := range keys {
			def = kid
		}
	}
	ks.Active = e.String(p.Active, def)
	switch {
	case ks.Active == "":
		e.Invalid(p.Active, "required when there are several keys")
	case keys[ks.Active] == nil:
		e.Invalid(p.Active, fmt.Sprintf("key id %q is not among the keys of %s", ks.Active, p.Keys))
		ks.Active = ""
	}
	return ks
}

// keyUse records that key belongs to variable name and returns the other
// variable that holds it already, if any. Keys are remembered by hash.
func (e *Env) keyUse(name string, key []byte) (string, bool) {
	sum := sha256.Sum256(key)
	if e.keys == nil {
		e.keys = make(map[[32]byte]string)
	}
	if other, ok := e.keys[sum]; ok && other != name {
		return other, true
	}
	e.keys[sum] = name
	return "", false
}

// isDevKey reports whether key is one of the public development keys.
func isDevKey(key []byte) bool {
	for _, k := range devKeys {
		if subtle.ConstantTimeCompare(k, key) == 1 {
			return true
		}
	}
	return false
}

// devKeys are the bytes of every public development key, parsed once.
var devKeys = func() [][]byte {
	var out [][]byte
	for _, spec := range []string{DevPIIKeys, DevOutboxKeys, DevSagaContextKeys, DevVersionTokenKeys} {
		keys, err := keyring.ParseKeys(spec, 0)
		if err != nil {
			panic(err) // unreachable: the specs are constants that TestKeys parses
		}
		for _, k := range keys {
			out = append(out, k)
		}
	}
	return out
}()

// Public development keys, the defaults of every binary in development
// mode so that a local run works out of the box; production mode refuses
// them. They are the same everywhere so that, for example, the outbox relay
// opens what the services seal, and distinct per purpose like real keys.
const (
	DevPIIKeys          = "dev-pii:Z29vZGdvLWRldi1waWktYXQtcmVzdC1rZXktMDAwMDE="  //nolint:gosec // public by design, see above
	DevOutboxKeys       = "dev:Z29vZGdvLWRldi1vdXRib3gtcGlpLWtleS0wMDAwMDE="      //nolint:gosec // public by design, see above
	DevSagaContextKeys  = "dev-saga:Z29vZGdvLWRldi1zYWdhLWNvbnRleHQta2V5LTAwMDE=" //nolint:gosec // public by design, see above
	DevVersionTokenKeys = "dev:Z29vZGdvLWRldi12ZXJzaW9uLXRva2VuLWtleS0wMDE="      //nolint:gosec // public by design, see above
)

// Keyring reads the AES-256-GCM keyring of purpose p as Keys does, or nil
// when there was a problem (recorded in e).
func (e *Env) Keyring(p Purpose, dev bool) *keyring.Keyring {
	ks := e.Keys(p, dev)
	if ks.Active == "" {
		return nil // the problem is already recorded
	}
	kr, err := keyring.New(ks.Active, ks.Keys)
	if err != nil {
		e.Invalid(p.Keys, err.Error())
	}
	return kr
}

// Package keyring encrypts small payloads with AES-256-GCM under named keys.
//
// A Keyring holds several keys, each under a key id, and one of them is the
// active key. Seal always uses the active key and returns its id, which the
// caller stores beside the ciphertext; Open takes that id back. Rotation
// without downtime is therefore three deployments of configuration, never a
// re-encryption: add the new key (readers can open it), make it active
// (writers use it), and remove the old key once nothing sealed under it is
// still stored.
//
// Ciphertexts are nonce (12 random bytes) || GCM ciphertext || tag (16 bytes).
// Random nonces bound one key to about 2^32 seals (NIST SP 800-38D); rotate
// well before that.
package keyring

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// KeySize is the only accepted key length: AES-256.
const KeySize = 32

// MaxKeyIDLen bounds a key id: it is stored beside, or inside, every
// sealed value.
const MaxKeyIDLen = 64

// Overhead is how many bytes Seal adds to a plaintext: nonce plus tag.
const Overhead = 12 + 16

var (
	// ErrUnknownKey is returned by Open for a key id this keyring does not hold.
	ErrUnknownKey = errors.New("keyring: unknown key id")
	// ErrDecrypt is returned by Open when the ciphertext or the additional
	// data is not what was sealed (tampered, truncated, wrong aad or key).
	ErrDecrypt = errors.New("keyring: message authentication failed")
)

// Keyring is a set of AES-256-GCM keys with one active key. It is immutable
// and safe for concurrent use.
type Keyring struct {
	active string
	aeads  map[string]cipher.AEAD
}

// New returns a keyring holding keys (key id → 32-byte key) whose active key
// is active. Key ids must be non-empty and may contain only ASCII letters,
// digits, '.', '_' and '-' (they travel in configuration and in database
// columns where "" means "not encrypted"). The key bytes are copied into the
// cipher; the caller may zero its copies afterwards.
func New(active string, keys map[string][]byte) (*Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("keyring: no keys")
	}
	aeads := make(map[string]cipher.AEAD, len(keys))
	for id, key := range keys {
		if err := validID(id); err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		if len(key) != KeySize {
			// The length is not secret; the bytes are, so they are never printed.
			return nil, fmt.Errorf("keyring: key %q is %d bytes, want %d", id, len(key), KeySize)
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", id, err)
		}
		// The random-nonce GCM draws a fresh 12-byte nonce per Seal and
		// prepends it, which is exactly the stored format.
		aead, err := cipher.NewGCMWithRandomNonce(block)
		if err != nil {
			return nil, fmt.Errorf("keyring: key %q: %w", id, err)
		}
		aeads[id] = aead
	}
	if active == "" {
		return nil, errors.New("keyring: no active key id")
	}
	if _, ok := aeads[active]; !ok {
		return nil, fmt.Errorf("keyring: active key %q is not among the keys %v", active, sortedIDs(aeads))
	}
	return &Keyring{active: active, aeads: aeads}, nil
}

// Parse builds a keyring from configuration: spec is a ParseKeys list of
// 32-byte keys, for example "k2:…,k1:…", and active names one of the kids.
// Errors name the entry and the problem but never include key material.
func Parse(spec string, active string) (*Keyring, error) {
	keys, err := ParseKeys(spec, KeySize)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return New(active, keys)
}

// ParseKeys is the one parser of key lists in configuration: spec is a
// comma-separated list of kid:base64key entries (standard base64, padded or
// not; surrounding spaces ignored). Key ids follow New's rules and appear
// once; each key is at least minLen bytes. Errors name the entry or the key
// id and the problem, never key material.
func ParseKeys(spec string, minLen int) (map[string][]byte, error) {
	keys := make(map[string][]byte)
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			return nil, fmt.Errorf("entry %d is empty", i+1)
		}
		id, encoded, ok := strings.Cut(entry, ":")
		if !ok {
			// Only the position is named: without a colon the entry may be
			// a bare key.
			return nil, fmt.Errorf("entry %d is not kid:base64key", i+1)
		}
		id = strings.TrimSpace(id)
		if err := validID(id); err != nil {
			return nil, fmt.Errorf("entry %d: %w", i+1, err)
		}
		if _, dup := keys[id]; dup {
			return nil, fmt.Errorf("key id %q appears twice", id)
		}
		encoded = strings.TrimSpace(encoded)
		enc := base64.StdEncoding
		if !strings.HasSuffix(encoded, "=") {
			enc = base64.RawStdEncoding
		}
		key, err := enc.DecodeString(encoded)
		if err != nil {
			// Not the decoder's message, which quotes input offsets.
			return nil, fmt.Errorf("key %q: not valid standard base64", id)
		}
		if len(key) < minLen {
			return nil, fmt.Errorf("key %q: decodes to %d bytes, need at least %d", id, len(key), minLen)
		}
		keys[id] = key
	}
	return keys, nil
}

func validID(id string) error {
	if id == "" {
		return errors.New("empty key id")
	}
	if len(id) > MaxKeyIDLen {
		return fmt.Errorf("key id of %d bytes is longer than %d", len(id), MaxKeyIDLen)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
		default:
			return fmt.Errorf("key id %q has a character outside [A-Za-z0-9._-]", id)
		}
	}
	return nil
}

// ActiveKeyID returns the id of the key Seal uses.
func (k *Keyring) ActiveKeyID() string { return k.active }

// KeyIDs returns the ids of every key Open accepts, sorted.
func (k *Keyring) KeyIDs() []string { return sortedIDs(k.aeads) }

// Seal encrypts plaintext under the active key, authenticating aad with it,
// and returns the key id to store beside the ciphertext. aad is not stored:
// Open must be given the same bytes (bind it to where the ciphertext lives,
// such as a row's id, so a ciphertext cannot be moved elsewhere). err is
// always nil today: crypto/rand cannot fail since Go 1.24 (it aborts the
// program instead); it is in the signature so that a future key backend
// (a KMS) can report failures without an API change.
func (k *Keyring) Seal(plaintext, aad []byte) (keyID string, ciphertext []byte, err error) {
	aead := k.aeads[k.active]
	// The nil nonce is required by NewGCMWithRandomNonce, which draws its own.
	out := aead.Seal(make([]byte, 0, len(plaintext)+Overhead), nil, plaintext, aad) //nolint:gosec // G407 misreads the random-nonce AEAD's nil nonce as hardcoded.
	return k.active, out, nil
}

// Open decrypts a ciphertext sealed under keyID with the same aad. It returns
// ErrUnknownKey when keyID is not held and ErrDecrypt when authentication
// fails for any reason (the two are distinct so that a missing key after a
// premature rotation is diagnosable, while tampering reveals nothing more).
func (k *Keyring) Open(keyID string, ciphertext, aad []byte) ([]byte, error) {
	aead, ok := k.aeads[keyID]
	if !ok {
		return nil, fmt.Errorf("%w %q (this keyring holds %v)", ErrUnknownKey, keyID, k.KeyIDs())
	}
	if len(ciphertext) < Overhead {
		return nil, fmt.Errorf("%w: key %q: %d bytes is shorter than a sealed value", ErrDecrypt, keyID, len(ciphertext))
	}
	plaintext, err := aead.Open(nil, nil, ciphertext, aad)
	if err != nil {
		return nil, fmt.Errorf("%w: key %q", ErrDecrypt, keyID)
	}
	return plaintext, nil
}

// Has reports whether keyID is one of the keys Open accepts.
func (k *Keyring) Has(keyID string) bool {
	_, ok := k.aeads[keyID]
	return ok
}

// String describes the keyring by key ids only, so that printing one (%v in
// a log line, a config dump) never leaks key material.
func (k *Keyring) String() string {
	return fmt.Sprintf("keyring(active=%s keys=%v)", k.active, sortedIDs(k.aeads))
}

// GoString is String, for %#v.
func (k *Keyring) GoString() string { return k.String() }

func sortedIDs(m map[string]cipher.AEAD) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

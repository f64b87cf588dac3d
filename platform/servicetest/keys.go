package servicetest

import (
	"crypto/rand"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/keyring"
)

// NewKey returns a fresh random key of keyring.KeySize bytes.
func NewKey(tb testing.TB) []byte {
	tb.Helper()
	k := make([]byte, keyring.KeySize)
	_, err := rand.Read(k)
	require.NoError(tb, err)
	return k
}

// runKeys holds the test binary's key of each key id, so that keyrings
// built apart (before and after a rotation, in two replicas) agree on them.
var runKeys sync.Map

// Keyring returns a keyring of the test binary's keys with ids, the first
// active: an id has the same key in every keyring Keyring returns.
func Keyring(tb testing.TB, ids ...string) *keyring.Keyring {
	tb.Helper()
	keys := make(map[string][]byte)
	for _, id := range ids {
		k, _ := runKeys.LoadOrStore(id, NewKey(tb))
		keys[id] = k.([]byte)
	}
	kr, err := keyring.New(ids[0], keys)
	require.NoError(tb, err)
	return kr
}

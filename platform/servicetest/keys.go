package servicetest

import (
	"crypto/rand"
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

package keyring_test

import (
	"bytes"
	"testing"

	"github.com/goodgo/goodgo/platform/keyring"
)

// BenchmarkSealValue and BenchmarkOpenValue price what sealing adds to an
// idempotency record: a 300-byte reply (a PlaceOrderResponse) sealed once
// when the call completes and opened once per replay.
func BenchmarkSealValue(b *testing.B) {
	kr, err := keyring.New("k1", map[string][]byte{"k1": bytes.Repeat([]byte{1}, keyring.KeySize)})
	if err != nil {
		b.Fatal(err)
	}
	reply, aad := bytes.Repeat([]byte("r"), 300), []byte("idem:order:0123456789abcdef\x00r")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.SealValue(reply, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenValue(b *testing.B) {
	kr, err := keyring.New("k1", map[string][]byte{"k1": bytes.Repeat([]byte{1}, keyring.KeySize)})
	if err != nil {
		b.Fatal(err)
	}
	reply, aad := bytes.Repeat([]byte("r"), 300), []byte("idem:order:0123456789abcdef\x00r")
	sealed, err := kr.SealValue(reply, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := kr.OpenValue(sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}

package token_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/token"
)

// The benchmarks run the jwx implementation that issue 13 replaced ("jwx")
// and the current one ("stdlib", "cached") side by side.

func BenchmarkSign(b *testing.B) {
	p := newPKI(b, "orchestrator", "payment")
	s := p.signer("orchestrator")
	perms := []string{"orders.place", "payments.charge"}
	b.Run("jwx", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := token.JWXSign(s, "payment", "alice", perms); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stdlib", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Sign("payment", "alice", perms); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkVerifyAssertion verifies assertions that are all different but
// share their header, as a callee sees them from one caller: the chain is
// verified once, by either implementation.
func BenchmarkVerifyAssertion(b *testing.B) {
	p := newPKI(b, "orchestrator", "payment")
	s := p.signer("orchestrator")
	var raws []string
	for i := range 256 {
		raws = append(raws, sign(b, s, "payment", fmt.Sprintf("user-%d", i), []string{"orders.place", "payments.charge"}))
	}
	run := func(b *testing.B, verify func(raw, peer string) (token.Assertion, error)) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := verify(raws[i%len(raws)], "orchestrator"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("jwx", func(b *testing.B) { run(b, token.NewJWXAssertionVerifier(p.verifier("payment")).Verify) })
	b.Run("stdlib", func(b *testing.B) { run(b, p.verifier("payment").Verify) })
}

// BenchmarkVerifyBearer verifies one token again and again ("repeat", as a
// client sends it with every call) and tokens never seen before ("fresh":
// 8,192 of them in turn, twice the cache's size, so that each is gone from
// the cache when it comes again).
func BenchmarkVerifyBearer(b *testing.B) {
	iss := newIssuer(b, "k1")
	v, _ := fileVerifier(b, iss)
	repeat := mint(b, iss, "alice", []string{"operator"}, time.Hour)
	fresh := make([]string, 8192)
	for i := range fresh {
		fresh[i] = mint(b, iss, fmt.Sprintf("user-%d", i), []string{"operator"}, time.Hour)
	}
	run := func(b *testing.B, toks []string, verify func(raw string) (token.Claims, error)) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			c, err := verify(toks[i%len(toks)])
			require.NoError(b, err)
			if c.Subject == "" {
				b.Fatal("no subject")
			}
			i++
		}
	}
	uncached := func(raw string) (token.Claims, error) { return v.VerifyUncached(b.Context(), raw) }
	cached := func(raw string) (token.Claims, error) { return v.Verify(b.Context(), raw) }
	b.Run("repeat/jwx", func(b *testing.B) { run(b, []string{repeat}, uncached) })
	b.Run("repeat/cached", func(b *testing.B) { run(b, []string{repeat}, cached) })
	b.Run("fresh/jwx", func(b *testing.B) { run(b, fresh, uncached) })
	b.Run("fresh/cached", func(b *testing.B) { run(b, fresh, cached) })
}

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

// BenchmarkSign signs for a new user each time ("fresh": what every call
// cost before assertions were reused, by either implementation) and for
// the same user again ("reuse": the signer hands out the assertion it
// signed lately).
func BenchmarkSign(b *testing.B) {
	p := newPKI(b, "orchestrator", "payment")
	s := p.signer("orchestrator")
	perms := []string{"orders.place", "payments.charge"}
	users := make([]string, 8192) // twice the signer's cache: each is gone when it comes again
	for i := range users {
		users[i] = fmt.Sprintf("user-%d", i)
	}
	run := func(b *testing.B, users []string, sign func(user string) (string, error)) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := sign(users[i%len(users)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("fresh/jwx", func(b *testing.B) {
		run(b, users, func(u string) (string, error) { return token.JWXSign(s, "payment", u, perms) })
	})
	b.Run("fresh/stdlib", func(b *testing.B) {
		run(b, users, func(u string) (string, error) { return s.Sign("payment", u, perms) })
	})
	b.Run("reuse/stdlib", func(b *testing.B) {
		run(b, users[:1], func(u string) (string, error) { return s.Sign("payment", u, perms) })
	})
}

// BenchmarkVerifyAssertion verifies assertions that share their header, as
// a callee sees them from one caller, so the chain is verified once:
// "fresh" ones, 8,192 in turn (twice the cache's size, so each is gone
// from the cache when it comes again), and one again and again ("repeat",
// a caller's reused assertion).
func BenchmarkVerifyAssertion(b *testing.B) {
	p := newPKI(b, "orchestrator", "payment")
	s := p.signer("orchestrator")
	fresh := make([]string, 8192)
	for i := range fresh {
		fresh[i] = sign(b, s, "payment", fmt.Sprintf("user-%d", i), []string{"orders.place", "payments.charge"})
	}
	run := func(b *testing.B, raws []string, verify func(raw, peer string) (token.Assertion, error)) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := verify(raws[i%len(raws)], "orchestrator"); err != nil {
				b.Fatal(err)
			}
			i++
		}
	}
	b.Run("fresh/jwx", func(b *testing.B) { run(b, fresh, token.NewJWXAssertionVerifier(p.verifier("payment")).Verify) })
	b.Run("fresh/stdlib", func(b *testing.B) { run(b, fresh, p.verifier("payment").Verify) })
	b.Run("repeat/stdlib", func(b *testing.B) { run(b, fresh[:1], p.verifier("payment").Verify) })
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

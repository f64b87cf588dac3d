package token_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/mtls"
	"github.com/goodgo/goodgo/platform/token"
)

// A signer reuses an assertion for the same callee, user and permissions
// for half its lifetime, and signs a new one for anything else.
func TestSignerReusesAssertions(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	now := time.Now()
	s := p.signer("orchestrator")
	s.SetClock(func() time.Time { return now })
	perms := []string{"orders.place"}
	first := sign(t, s, "payment", "alice", perms)
	require.Equal(t, first, sign(t, s, "payment", "alice", []string{"orders.place"}), "the same assertion, reused")

	// Each a new assertion, none reused for another: the last two would
	// share a cache entry if the permissions were joined without their
	// lengths.
	distinct := map[string]bool{first: true}
	for _, raw := range []string{
		sign(t, s, "payment", "bob", perms),
		sign(t, s, "inventory", "alice", perms),
		sign(t, s, "payment", "alice", []string{"orders.place", "payments.charge"}),
		sign(t, s, "payment", "alice", nil),
		sign(t, s, "payment", "alice", []string{"orders", "place"}),
		sign(t, s, "payment", "alice", []string{"ordersplace"}),
	} {
		require.False(t, distinct[raw], "an assertion reused for something else")
		distinct[raw] = true
	}

	// What a callee receives always has at least half its lifetime left.
	now = now.Add(token.ReuseAssertionsFor - time.Second)
	require.Equal(t, first, sign(t, s, "payment", "alice", perms))
	now = now.Add(time.Second)
	second := sign(t, s, "payment", "alice", perms)
	require.NotEqual(t, first, second, "signed anew once half its lifetime is gone")
	v := p.verifier("payment")
	v.SetClock(func() time.Time { return now })
	a, err := v.Verify(second, "orchestrator")
	require.NoError(t, err)
	require.Equal(t, now.Add(token.AssertionTTL).Unix(), a.Expires.Unix())

	// A clock that went back does not hand out an assertion issued in
	// what is now the future.
	now = now.Add(-time.Hour)
	require.NotEqual(t, second, sign(t, s, "payment", "alice", perms))
}

// swapCerts is a certificate source that rotates when told to.
type swapCerts struct {
	mu  sync.Mutex
	cur *mtls.Source
}

func (c *swapCerts) Certificate() (*tls.Certificate, *x509.Certificate) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur.Certificate()
}

func (c *swapCerts) rotate(to *mtls.Source) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = to
}

// An assertion is reused only while the certificate that signed it is the
// current one: after a rotation the next one carries the new chain.
func TestSignerSignsAgainAfterRotation(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	certs := &swapCerts{cur: p.sources["orchestrator"]}
	s := token.NewSigner(certs, "orchestrator", mtls.ID)
	before := sign(t, s, "payment", "alice", nil)
	require.Equal(t, before, sign(t, s, "payment", "alice", nil))

	certs.rotate(loadIdentity(t, p.ca, "orchestrator", nil))
	after := sign(t, s, "payment", "alice", nil)
	require.NotEqual(t, strings.Split(before, ".")[0], strings.Split(after, ".")[0], "the new certificate's x5c")
	_, err := p.verifier("payment").Verify(after, "orchestrator")
	require.NoError(t, err)
}

// The signer's cache is bounded: a full one drops what it holds.
func TestSignerCacheIsBounded(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	s := p.signer("orchestrator")
	s.SetMaxSignedAssertions(3)
	for i := range 10 {
		sign(t, s, "payment", fmt.Sprintf("user-%d", i), nil)
		require.LessOrEqual(t, s.SignedAssertions(), 3)
	}
	require.Positive(t, s.SignedAssertions())
}

// A verified assertion is remembered: the same one again is accepted
// without its signature being checked, but only from the peer that signed
// it, only until it expires or verifiedFor passes, and what the caller
// does with the returned permissions does not change what is remembered.
func TestAssertionVerifierRemembersVerified(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment", "inventory")
	now := time.Now()
	clock := func() time.Time { return now }
	v := p.verifier("payment")
	v.SetClock(clock)
	s := p.signer("orchestrator")
	s.SetClock(clock)
	raw := sign(t, s, "payment", "alice", []string{"orders.place", "payments.charge"})

	a, err := v.Verify(raw, "orchestrator")
	require.NoError(t, err)
	require.Equal(t, 1, v.CachedAssertions())
	require.Equal(t, now.Add(30*time.Second), v.RememberedUntil(raw), "verifiedFor, before exp and the chain's minute")
	a.Permissions[0] = "admin"

	again, err := v.Verify(raw, "orchestrator")
	require.NoError(t, err)
	require.Equal(t, "alice", again.User)
	require.Equal(t, []string{"orders.place", "payments.charge"}, again.Permissions)
	_, err = v.Verify(raw, "inventory")
	require.ErrorContains(t, err, "signed by orchestrator, not by the calling inventory")

	// A byte changed in the signature is another assertion: verified, and
	// refused.
	i := strings.LastIndexByte(raw, '.') + 10
	flipped := byte('A')
	if raw[i] == 'A' {
		flipped = 'B'
	}
	tampered := raw[:i] + string(flipped) + raw[i+1:]
	_, err = v.Verify(tampered, "orchestrator")
	require.ErrorIs(t, err, token.ErrSignature)

	// Past verifiedFor (30s) the entry goes and the assertion is verified
	// again (and remembered again).
	signedAt := now
	now = now.Add(31 * time.Second)
	_, err = v.Verify(raw, "orchestrator")
	require.NoError(t, err)
	require.Equal(t, 1, v.CachedAssertions())
	require.Equal(t, signedAt.Add(token.AssertionTTL).Unix(), v.RememberedUntil(raw).Unix(),
		"verified again: remembered now until its exp")
	// Past exp and the skew it is refused, cache or not.
	now = now.Add(token.AssertionTTL)
	_, err = v.Verify(raw, "orchestrator")
	require.ErrorIs(t, err, token.ErrExpired)
	require.Zero(t, v.CachedAssertions())
}

// The verifier's cache is bounded, and a refusal is never remembered.
func TestAssertionVerifierCacheIsBounded(t *testing.T) {
	t.Parallel()
	p := newPKI(t, "orchestrator", "payment")
	v := p.verifier("payment")
	v.SetMaxCachedAssertions(3)
	s := p.signer("orchestrator")
	for i := range 10 {
		_, err := v.Verify(sign(t, s, "payment", fmt.Sprintf("user-%d", i), nil), "orchestrator")
		require.NoError(t, err)
		require.LessOrEqual(t, v.CachedAssertions(), 3)
	}
	w := p.verifier("payment")
	_, err := w.Verify(sign(t, s, "inventory", "alice", nil), "orchestrator")
	require.ErrorIs(t, err, token.ErrAudience)
	require.Zero(t, w.CachedAssertions())
}

package token

import (
	"context"
	"crypto/sha256"
	"time"
)

// VerifyUncached is Verify as it was before its cache of verified tokens.
func (v *Verifier) VerifyUncached(ctx context.Context, raw string) (Claims, error) {
	set, err := v.keysFor(ctx, raw)
	if err != nil {
		return Claims{}, err
	}
	return v.verify(raw, set)
}

// CachedTokens is how many verified tokens v remembers.
func (v *Verifier) CachedTokens() int {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	return len(v.verified)
}

// SetMaxCachedTokens bounds v's verified-token cache to n.
func (v *Verifier) SetMaxCachedTokens(n int) {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	v.maxVerified = n
}

// CachedAssertions is how many verified assertions v remembers.
func (v *AssertionVerifier) CachedAssertions() int {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	return len(v.verified)
}

// SetMaxCachedAssertions bounds v's verified-assertion cache to n.
func (v *AssertionVerifier) SetMaxCachedAssertions(n int) {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	v.maxVerified = n
}

// SignedAssertions is how many signed assertions s keeps for reuse.
func (s *Signer) SignedAssertions() int {
	s.amu.Lock()
	defer s.amu.Unlock()
	return len(s.signed)
}

// SetMaxSignedAssertions bounds s's signed-assertion cache to n.
func (s *Signer) SetMaxSignedAssertions(n int) {
	s.amu.Lock()
	defer s.amu.Unlock()
	s.maxSigned = n
}

// ReuseAssertionsFor is how long a Signer reuses an assertion.
const ReuseAssertionsFor = reuseAssertionsFor

// RememberedUntil is until when v trusts raw without verifying it again
// (zero if it does not remember raw).
func (v *AssertionVerifier) RememberedUntil(raw string) time.Time {
	v.vmu.Lock()
	defer v.vmu.Unlock()
	return v.verified[sha256.Sum256([]byte(raw))].until
}

package token

import "context"

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

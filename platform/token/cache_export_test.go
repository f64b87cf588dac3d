package token

import (
	"context"
	"fmt"
	"strings"
)

// VerifyUncached is Verify as it was before its cache of verified tokens.
func (v *Verifier) VerifyUncached(ctx context.Context, raw string) (Claims, error) {
	if raw == "" || len(raw) > MaxLength || strings.Count(raw, ".") != 2 {
		return Claims{}, ErrMalformed
	}
	set, err := v.keys(ctx)
	if err != nil {
		return Claims{}, fmt.Errorf("token: keys: %w", err)
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

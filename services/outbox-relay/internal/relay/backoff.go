package relay

import "github.com/goodgo/goodgo/platform/backoff"

// newBackoff is the relay's wait between retries against a recovering
// broker or database.
func (r *Relay) newBackoff() *backoff.Exponential {
	return &backoff.Exponential{Policy: backoff.Policy{Min: r.cfg.BackoffMin, Max: r.cfg.BackoffMax}}
}

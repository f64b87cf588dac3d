package opshttp

import (
	"context"
	"fmt"
)

// Check is one named readiness check, e.g. {"postgres", pool.Ping}.
type Check struct {
	// Name is what /readyz shows when the check fails: a dependency's
	// role ("postgres", "redis"), never its address.
	Name string
	// Fn returns nil when the dependency is usable. It must honour ctx.
	Fn func(context.Context) error
}

// CheckError reports the failed check of [Checks]. Its Error text includes
// the underlying error (for logs); /readyz shows only Name.
type CheckError struct {
	Name string
	Err  error
}

func (e *CheckError) Error() string { return fmt.Sprintf("%s: %v", e.Name, e.Err) }

func (e *CheckError) Unwrap() error { return e.Err }

// Checks combines checks into a readiness function for [New]: it runs them
// in order and returns a *CheckError for the first that fails, or nil when
// all pass. A check with a nil Fn passes.
func Checks(checks ...Check) func(context.Context) error {
	return func(ctx context.Context) error {
		for _, c := range checks {
			if c.Fn == nil {
				continue
			}
			if err := c.Fn(ctx); err != nil {
				return &CheckError{Name: c.Name, Err: err}
			}
		}
		return nil
	}
}

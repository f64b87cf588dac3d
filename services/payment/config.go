package main

import (
	"fmt"

	"github.com/goodgo/goodgo/platform/bootstrap"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/services/payment/internal/payment"
)

// Config is the payment service's configuration, read once from the
// environment by loadConfig. Every variable has a default that works on a
// developer machine.
type Config struct {
	// Shared with order and inventory: GRPC_ADDR (127.0.0.1:50052),
	// HTTP_ADDR (127.0.0.1:9102), DATABASE_URL (goodgo_payment), Redis,
	// idempotency, VERSION_TOKEN_* and OUTBOX_* (see bootstrap.DomainConfig).
	bootstrap.DomainConfig

	// DeclineAboveMinor declines every payment above this many minor units
	// (PAYMENT_DECLINE_ABOVE_MINOR, default 1000000; 0 disables the limit).
	// With the test card "tok_decline" it lets a client produce failed
	// payments on demand.
	DeclineAboveMinor int64
}

// loadConfig reads the configuration through lookup (os.LookupEnv in main).
// The error names every bad variable, one "NAME: problem" line each.
func loadConfig(lookup func(string) (string, bool)) (Config, error) {
	e := config.NewEnv(lookup)
	c := Config{
		DomainConfig:      bootstrap.LoadDomainConfig(e, "payment", "127.0.0.1:50052", "127.0.0.1:9102"),
		DeclineAboveMinor: int64(e.Int("PAYMENT_DECLINE_ABOVE_MINOR", payment.DefaultDeclineAboveMinor)),
	}
	if c.DeclineAboveMinor < 0 {
		e.Invalid("PAYMENT_DECLINE_ABOVE_MINOR", fmt.Sprintf("must not be negative (got %d; 0 disables the limit)", c.DeclineAboveMinor))
	}
	return c, e.Err()
}

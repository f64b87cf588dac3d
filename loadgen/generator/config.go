package generator

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// Config is one run of the generator.
type Config struct {
	// Order is a connection to the order service as an end user's client
	// (TLS, no client certificate); each call carries a shopper's token.
	Order grpc.ClientConnInterface
	// Orchestrator, optional, is a connection to the orchestrator: with it
	// the generator also reads each order's saga (ListSagas, as the
	// shopper) and counts the sagas' final states.
	Orchestrator grpc.ClientConnInterface
	// Shoppers place the orders, in turn: each a customer id (the token's
	// subject) and a bearer token. Rate limits are per user, so more
	// shoppers carry more load.
	Shoppers []Shopper

	// Rate is orders started per second (open loop). Without it,
	// Concurrency workers each place an order, follow it to its end and
	// start the next (closed loop). With it, Concurrency caps the orders in
	// flight (default 1000).
	Rate        float64
	Concurrency int
	// Count and Duration stop the run: whichever comes first; at least one.
	Count    int
	Duration time.Duration

	Mix Mix
	// RetryFraction of the orders are placed a second time with the same
	// idempotency key and request, as a client that lost the reply would;
	// the reply must name the same order.
	RetryFraction float64

	// FollowTimeout bounds each order: placement (with its rate-limit
	// waits) and the polling until CONFIRMED or CANCELLED. Default 60s.
	FollowTimeout time.Duration
	// PollInterval is the first pause between GetOrder polls (default
	// 50ms); each next one is half as long again, up to MaxPollInterval
	// (default 1s). The saga time comes from the order's own timestamps
	// and does not depend on them; the observed time does.
	PollInterval    time.Duration
	MaxPollInterval time.Duration

	// GoodSKUs are what good and declined orders buy (one or two lines of
	// one unit each). HotSKU is the one SKU every hot order buys. An
	// out-of-stock order asks for OutOfStockQuantity of OutOfStockSKU.
	// Defaults: the seeded catalog (db/inventory/migrations/000003).
	GoodSKUs           []string
	HotSKU             string
	OutOfStockSKU      string
	OutOfStockQuantity int32
	// PaymentMethod pays good orders; DeclineMethod is the card the
	// payment service declines. Defaults tok_visa and tok_decline.
	PaymentMethod string
	DeclineMethod string

	// Progress, if set, is called every ProgressInterval (default 250ms)
	// with the live view, and once more when the run ends. It is called
	// from one goroutine and must not block for long.
	Progress         func(Snapshot)
	ProgressInterval time.Duration
}

// Shopper is a user the generator places orders for.
type Shopper struct {
	ID    string // the customer id: the token's subject
	Token string
}

// The seeded catalog's SKUs (db/inventory/migrations/000003_seed_catalog).
var (
	DefaultGoodSKUs = []string{"SKU-KEYBOARD", "SKU-MOUSE", "SKU-MONITOR", "SKU-HEADSET", "SKU-DOCK", "SKU-WEBCAM"}
)

// Defaults of the catalog-dependent settings.
const (
	DefaultHotSKU        = "SKU-CABLE"
	DefaultOutOfStockSKU = "SKU-LIMITED"
	// DefaultOutOfStockQuantity is more than SKU-LIMITED's stock of 5, and
	// at 15.00 each under the payment service's decline limit (10,000.00),
	// so that the saga fails on stock, not on the card.
	DefaultOutOfStockQuantity = 100
	DefaultMaxInFlight        = 1000
)

// withDefaults fills the zero settings and validates the rest.
func (c Config) withDefaults() (Config, error) {
	if c.FollowTimeout == 0 {
		c.FollowTimeout = time.Minute
	}
	if c.PollInterval == 0 {
		c.PollInterval = 50 * time.Millisecond
	}
	if c.MaxPollInterval == 0 {
		c.MaxPollInterval = max(time.Second, c.PollInterval)
	}
	if len(c.GoodSKUs) == 0 {
		c.GoodSKUs = DefaultGoodSKUs
	}
	if c.HotSKU == "" {
		c.HotSKU = DefaultHotSKU
	}
	if c.OutOfStockSKU == "" {
		c.OutOfStockSKU = DefaultOutOfStockSKU
	}
	if c.OutOfStockQuantity == 0 {
		c.OutOfStockQuantity = DefaultOutOfStockQuantity
	}
	if c.PaymentMethod == "" {
		c.PaymentMethod = "tok_visa"
	}
	if c.DeclineMethod == "" {
		c.DeclineMethod = "tok_decline"
	}
	if c.ProgressInterval == 0 {
		c.ProgressInterval = 250 * time.Millisecond
	}
	if c.Rate > 0 && c.Concurrency == 0 {
		c.Concurrency = DefaultMaxInFlight
	}
	var errs []error
	if c.Order == nil {
		errs = append(errs, errors.New("no connection to the order service"))
	}
	if len(c.Shoppers) == 0 {
		errs = append(errs, errors.New("no shoppers"))
	}
	for i, s := range c.Shoppers {
		if s.ID == "" || s.Token == "" {
			errs = append(errs, fmt.Errorf("shopper %d: needs an id and a token", i))
		}
	}
	switch {
	case c.Rate < 0:
		errs = append(errs, fmt.Errorf("rate %v: must not be negative", c.Rate))
	case c.Concurrency < 0:
		errs = append(errs, fmt.Errorf("concurrency %d: must not be negative", c.Concurrency))
	case c.Rate == 0 && c.Concurrency == 0:
		errs = append(errs, errors.New("set a rate or a concurrency"))
	}
	if c.Count < 0 || c.Duration < 0 {
		errs = append(errs, errors.New("count and duration must not be negative"))
	}
	if c.Count == 0 && c.Duration == 0 {
		errs = append(errs, errors.New("set a count or a duration"))
	}
	if c.Mix.total() <= 0 {
		errs = append(errs, errors.New("the mix has no positive weight"))
	}
	if c.RetryFraction < 0 || c.RetryFraction > 1 {
		errs = append(errs, fmt.Errorf("retry fraction %v: must be between 0 and 1", c.RetryFraction))
	}
	if c.FollowTimeout < 0 || c.PollInterval < 0 || c.MaxPollInterval < c.PollInterval || c.ProgressInterval < 0 {
		errs = append(errs, errors.New("timeouts and intervals must not be negative, nor the largest poll interval less than the first"))
	}
	if c.OutOfStockQuantity < 1 || c.OutOfStockQuantity > 1000 {
		errs = append(errs, fmt.Errorf("out-of-stock quantity %d: must be 1 to 1000", c.OutOfStockQuantity))
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("loadgen: %w", err)
	}
	return c, nil
}

// mode describes how orders are started, for the summary.
func (c Config) mode() string {
	if c.Rate > 0 {
		return fmt.Sprintf("rate %g/s (at most %d in flight)", c.Rate, c.Concurrency)
	}
	return fmt.Sprintf("concurrency %d", c.Concurrency)
}

package telemetry

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c on reg, or returns the collector of the same type
// already registered under its descriptors, so that several instances of a
// component (two consumers, two servers in one process) share their
// series. Any other failure names the registering package (owner).
func Register[C prometheus.Collector](reg prometheus.Registerer, owner string, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) {
			if existing, ok := already.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("%s: register metrics: %w", owner, err)
	}
	return c, nil
}

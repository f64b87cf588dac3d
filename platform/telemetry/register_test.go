package telemetry_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/telemetry"
)

func TestRegisterReusesTheCollectorAlreadyThere(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "things_total", Help: "Things."}
	first, err := telemetry.Register(reg, "pkg", prometheus.NewCounter(opts))
	require.NoError(t, err)
	second, err := telemetry.Register(reg, "pkg", prometheus.NewCounter(opts))
	require.NoError(t, err)
	require.Same(t, first, second, "the second instance shares the first's series")

	// The same name with other labels is a conflict, named by its owner.
	_, err = telemetry.Register(reg, "pkg", prometheus.NewCounterVec(opts, []string{"kind"}))
	require.ErrorContains(t, err, "pkg: register metrics:")
}

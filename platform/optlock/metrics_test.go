package optlock_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/optlock"
)

func TestRecordCountsOnlyUpdatesThatRan(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	counts := func() (attempts, conflicts float64) {
		return gather(t, reg, "optimistic_lock_attempts_total", "order"),
			gather(t, reg, "optimistic_lock_conflicts_total", "order")
	}

	errNotFound := errors.New("order not found")
	for _, err := range []error{
		errNotFound,
		fmt.Errorf("confirm: %w", errNotFound),
		errors.New("order is CANCELLED: cannot confirm"),
		context.Canceled,
		fmt.Errorf("update: %w", context.DeadlineExceeded),
	} {
		require.Same(t, err, m.Record("order", err), "returned unchanged")
	}
	attempts, conflicts := counts()
	require.Zero(t, attempts, "errors before or instead of the write are not attempts")
	require.Zero(t, conflicts)

	require.NoError(t, m.Record("order", nil))
	conflict := fmt.Errorf("order o-1 changed since version 3: %w", optlock.ErrConflict)
	require.Same(t, conflict, m.Record("order", conflict))
	attempts, conflicts = counts()
	require.Equal(t, 2.0, attempts, "a win and a conflict")
	require.Equal(t, 1.0, conflicts)
	require.Equal(t, 0.5, gather(t, reg, "optimistic_lock_success_rate", "order"))

	var nilMetrics *optlock.Metrics
	require.Same(t, errNotFound, nilMetrics.Record("order", errNotFound), "nil Metrics record nothing")
}

func TestRetryDoesNotCountOtherErrorsAsAttempts(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := optlock.NewMetrics(reg)
	require.NoError(t, err)
	errGone := errors.New("payment not found")

	calls := 0
	err = optlock.Retry(t.Context(), optlock.DefaultPolicy, m, "payment", func(context.Context) error {
		calls++
		if calls == 1 {
			return optlock.ErrConflict
		}
		return errGone // the re-read found the row deleted: no UPDATE ran
	})
	require.ErrorIs(t, err, errGone)
	require.Equal(t, 2, calls)
	require.Equal(t, 1.0, gather(t, reg, "optimistic_lock_attempts_total", "payment"))
	require.Equal(t, 1.0, gather(t, reg, "optimistic_lock_conflicts_total", "payment"))
	require.Equal(t, 1.0, gather(t, reg, "optimistic_lock_retries_total", "payment"))
}

package grpcapi

import (
	"context"
	"log/slog"
	"testing"

	"github.com/goodgo/goodgo/platform/servicetest"
)

// TestToStatusClassifiesDatabaseFailures: lock_timeout is provoked for real
// in TestDatabaseLockTimeoutIsUnavailable.
func TestToStatusClassifiesDatabaseFailures(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, slog.New(slog.DiscardHandler))
	servicetest.RequireDatabaseFailuresClassified(t, func(err error) error { return s.toStatus(context.Background(), err) })
}

package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/saga"
)

// TestToStatus checks both services' mappings, the errors of their own and
// those they leave to otherStatus: the code, the client's message and what
// is logged.
func TestToStatus(t *testing.T) {
	transient := fmt.Errorf("read: %w", io.ErrUnexpectedEOF)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	sagas, parked := New(nil, logger), NewParked(nil, logger)
	for _, tc := range []struct {
		name     string
		toStatus func(context.Context, error) error
		err      error
		code     codes.Code
		msg, log string
	}{
		{"saga not found", sagas.toStatus, saga.ErrNotFound, codes.NotFound, "saga not found", ""},
		{"saga serialization failure", sagas.toStatus, &pgconn.PgError{Code: "40001"}, codes.Aborted, "concurrent change; retry", ""},
		{"saga transient", sagas.toStatus, transient, codes.Unavailable, "temporarily unavailable; retry", "saga request failed; transient"},
		{"saga canceled", sagas.toStatus, context.Canceled, codes.Canceled, "request canceled", ""},
		{"saga deadline", sagas.toStatus, context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded", ""},
		{"saga other", sagas.toStatus, errors.New("secret detail"), codes.Internal, "internal error", "saga request failed"},
		{"parked not found", parked.toStatus, inbox.ErrParkedNotFound, codes.NotFound, "parked event not found", ""},
		{"parked transient", parked.toStatus, transient, codes.Unavailable, "temporarily unavailable; retry", "parked events request failed; transient"},
		{"parked canceled", parked.toStatus, context.Canceled, codes.Canceled, "request canceled", ""},
		{"parked deadline", parked.toStatus, context.DeadlineExceeded, codes.DeadlineExceeded, "deadline exceeded", ""},
		{"parked other", parked.toStatus, errors.New("secret detail"), codes.Internal, "internal error", "parked events request failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs.Reset()
			st, ok := status.FromError(tc.toStatus(t.Context(), tc.err))
			require.True(t, ok)
			require.Equal(t, tc.code, st.Code())
			require.Equal(t, tc.msg, st.Message())
			if tc.log == "" {
				require.Empty(t, logs.String())
				return
			}
			require.Contains(t, logs.String(), fmt.Sprintf("msg=%q", tc.log))
		})
	}
}

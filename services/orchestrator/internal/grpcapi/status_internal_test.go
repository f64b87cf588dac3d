package grpcapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/saga"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// TestToStatus checks both services' mappings: their own errors, and that
// the rest reach grpcerr.Fallback (tested there) with the name of
// what failed: the code, the client's message and what is logged.
func TestToStatus(t *testing.T) {
	transient := fmt.Errorf("read: %w", io.ErrUnexpectedEOF)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	sagas, parked := New(nil, logger), NewParked(nil, logger)
	for _, toStatus := range []func(context.Context, error) error{sagas.toStatus, parked.toStatus} {
		servicetest.RequireDatabaseFailuresClassified(t, func(err error) error { return toStatus(t.Context(), err) })
	}
	for _, tc := range []struct {
		name     string
		toStatus func(context.Context, error) error
		err      error
		code     codes.Code
		msg, log string
	}{
		{"saga not found", sagas.toStatus, saga.ErrNotFound, codes.NotFound, "saga not found", ""},
		{"saga transient", sagas.toStatus, transient, codes.Unavailable, "temporarily unavailable; retry", "saga request failed; transient"},
		{"saga other", sagas.toStatus, errors.New("secret detail"), codes.Internal, "internal error", "saga request failed"},
		{"parked not found", parked.toStatus, inbox.ErrParkedNotFound, codes.NotFound, "parked event not found", ""},
		{"parked canceled", parked.toStatus, context.Canceled, codes.Canceled, "request canceled", ""},
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

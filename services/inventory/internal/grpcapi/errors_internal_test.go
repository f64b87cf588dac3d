package grpcapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestToStatusClassifiesDatabaseFailures covers the database errors the
// integration tests cannot provoke on demand (a serialization failure, a
// deadlock, a server shutting down); lock_timeout is provoked for real in
// TestDatabaseLockTimeoutIsUnavailable.
func TestToStatusClassifiesDatabaseFailures(t *testing.T) {
	t.Parallel()
	s := New(nil, nil, nil)
	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{&pgconn.PgError{Code: "40001"}, codes.Aborted, "concurrent update; retry"},
		{&pgconn.PgError{Code: "40P01"}, codes.Aborted, "concurrent update; retry"},
		{&pgconn.PgError{Code: "55P03"}, codes.Unavailable, "temporarily unavailable; retry"},
		{&pgconn.PgError{Code: "57P01"}, codes.Unavailable, "temporarily unavailable; retry"},
		{&pgconn.PgError{Code: "53300"}, codes.Unavailable, "temporarily unavailable; retry"},
		{io.ErrUnexpectedEOF, codes.Unavailable, "temporarily unavailable; retry"},
		{&pgconn.PgError{Code: "23505"}, codes.Internal, "internal error"},
		{errors.New("boom"), codes.Internal, "internal error"},
	} {
		err := s.toStatus(context.Background(), "ReleaseStock", fmt.Errorf("release stock of order x: %w", tc.err))
		st := status.Convert(err)
		require.Equal(t, tc.code, st.Code(), "%v", tc.err)
		require.Equal(t, tc.msg, st.Message(), "%v", tc.err)
	}
}

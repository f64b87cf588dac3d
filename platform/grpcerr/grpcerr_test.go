package grpcerr_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func TestFallbackClassifiesAndKeepsTheTextFromTheClient(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	fallback := func(err error) error {
		return grpcerr.Fallback(context.Background(), logger, "thing request", err, "rpc", "DoThing")
	}
	servicetest.RequireDatabaseFailuresClassified(t, fallback)

	for _, tc := range []struct {
		err  error
		code codes.Code
		msg  string
	}{
		{context.Canceled, codes.Canceled, "request canceled"},
		{fmt.Errorf("read: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "deadline exceeded"},
	} {
		st := status.Convert(fallback(tc.err))
		require.Equal(t, tc.code, st.Code(), "%v", tc.err)
		require.Equal(t, tc.msg, st.Message(), "%v", tc.err)
	}

	// What failed is in the log, with the caller's attributes, at the level
	// its kind deserves.
	logs.Reset()
	_ = fallback(fmt.Errorf("write: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize"}))
	_ = fallback(errors.New("secret detail"))
	var lines []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(logs.Bytes()), []byte("\n")) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(l, &m))
		lines = append(lines, m)
	}
	require.Len(t, lines, 2)
	require.Equal(t, "WARN", lines[0]["level"])
	require.Equal(t, "thing request failed; rolled back by the database", lines[0]["msg"])
	require.Equal(t, "ERROR", lines[1]["level"])
	require.Equal(t, "thing request failed", lines[1]["msg"])
	require.Equal(t, "secret detail", lines[1]["error"])
	require.Equal(t, "DoThing", lines[1]["rpc"])
}

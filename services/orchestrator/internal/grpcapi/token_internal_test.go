package grpcapi

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/saga"
)

func TestPageTokenRoundTrip(t *testing.T) {
	c := saga.ListCursor{CreatedAt: time.Date(2026, 11, 26, 1, 2, 3, 456789000, time.UTC), ID: uuid.New()}
	got, err := decodeToken(encodeToken(c))
	require.NoError(t, err)
	require.True(t, c.CreatedAt.Equal(got.CreatedAt))
	require.Equal(t, c.ID, got.ID)
	for _, bad := range []string{"", "!!", encodeToken(c)[:10], encodeToken(c) + "AA"} {
		_, err := decodeToken(bad)
		require.Error(t, err, bad)
	}
}

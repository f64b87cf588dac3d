package postgres_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
)

// uuid.UUID implements driver.Valuer, which pgx honours first: each uuid
// parameter was formatted as text (an allocation) and parsed back. With
// RegisterUUID it is copied as its sixteen bytes.
func TestRegisterUUIDEncodesWithoutText(t *testing.T) {
	u := uuid.New()
	var value any = u
	encode := func(m *pgtype.Map) float64 {
		buf := make([]byte, 0, 64)
		out, err := m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, value, buf)
		require.NoError(t, err)
		require.Equal(t, u[:], out)
		return testing.AllocsPerRun(100, func() { _, _ = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, value, buf) })
	}
	require.GreaterOrEqual(t, encode(pgtype.NewMap()), 10.0, "pgx's own path, through Value() and text")
	m := pgtype.NewMap()
	postgres.RegisterUUID(m)
	require.Zero(t, encode(m))
}

// The UUIDs a pool of Connect sends and reads are the server's: as
// parameters, columns, arrays and NULL, in binary and as text.
func TestConnectRoundTripsUUIDs(t *testing.T) {
	t.Parallel()
	url, _ := pgtest.NewDatabase(t, nil)
	pool, err := postgres.Connect(t.Context(), url, nil, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	ctx := t.Context()
	u, v := uuid.New(), uuid.New()

	var got uuid.UUID
	var text string
	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::uuid, $1::uuid::text", u).Scan(&got, &text))
	require.Equal(t, u, got)
	require.Equal(t, u.String(), text, "the server sees the same UUID")

	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::text::uuid", v.String()).Scan(&got))
	require.Equal(t, v, got, "a column the server made")

	var arr []uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::uuid[]", []uuid.UUID{u, v}).Scan(&arr))
	require.Equal(t, []uuid.UUID{u, v}, arr)

	var ptr *uuid.UUID
	require.NoError(t, pool.QueryRow(ctx, "SELECT NULL::uuid").Scan(&ptr))
	require.Nil(t, ptr)
	require.Error(t, pool.QueryRow(ctx, "SELECT NULL::uuid").Scan(&got), "NULL into a UUID")
	var null uuid.NullUUID
	require.NoError(t, pool.QueryRow(ctx, "SELECT NULL::uuid").Scan(&null))
	require.False(t, null.Valid)
	require.NoError(t, pool.QueryRow(ctx, "SELECT $1::uuid", uuid.NullUUID{UUID: u, Valid: true}).Scan(&null))
	require.Equal(t, uuid.NullUUID{UUID: u, Valid: true}, null)
}

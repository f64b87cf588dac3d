package inbox_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
)

func TestNewRefusesToParkInTheClear(t *testing.T) {
	_, pool := pgtest.NewDatabase(t, migrations(t))
	_, err := inbox.New(inbox.Config{Brokers: []string{"127.0.0.1:1"}, GroupID: "g", Topics: []string{topic}},
		pool, recordEffect, inbox.Options{})
	require.ErrorIs(t, err, inbox.ErrNoKeys)
}

// TestResealParked rotates the PII key over parked payloads, some sealed
// under the old key and some parked in the clear by an earlier release,
// while a consumer keeps parking new ones under the new key.
func TestResealParked(t *testing.T) {
	ctx := context.Background()
	_, pool := pgtest.NewDatabase(t, migrations(t))
	old := servicetest.Keyring(t, "r1")
	rotated := servicetest.Keyring(t, "r2", "r1")
	park := func(id uuid.UUID, payload []byte, kid string) {
		_, err := pool.Exec(ctx, `INSERT INTO inbox_parked (consumer, event_id, topic, kafka_partition, kafka_offset,
			aggregate_type, aggregate_id, event_type, payload, key_id, error)
			VALUES ('projector', $1, 't', 0, 0, 'order', 'o', 'order.created.v1', $2, $3, 'boom')`, id, payload, kid)
		require.NoError(t, err)
	}
	ids := make([]uuid.UUID, 0, 1200)
	for i := range 1200 {
		id := uuid.New()
		ids = append(ids, id)
		plain := fmt.Appendf(nil, "12 Main Street #%d", i)
		switch i % 3 {
		case 0:
			park(id, plain, "") // before sealing
		case 1:
			kid, sealed, err := old.Seal(plain, inbox.ParkedAAD("projector", id))
			require.NoError(t, err)
			park(id, sealed, kid)
		default:
			kid, sealed, err := rotated.Seal(plain, inbox.ParkedAAD("projector", id))
			require.NoError(t, err)
			park(id, sealed, kid)
		}
	}

	stats, err := inbox.ResealParked(ctx, pool, rotated)
	require.NoError(t, err)
	require.Equal(t, keyring.ResealStats{Scanned: 1200, Resealed: 800}, stats)

	retired := servicetest.Keyring(t, "r2")
	var clear int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM inbox_parked
		WHERE key_id <> 'r2' OR position(convert_to('Main Street', 'UTF8') IN payload) > 0`).Scan(&clear))
	require.Zero(t, clear, "everything under the new key, nothing in the clear")
	rows, err := pool.Query(ctx, "SELECT event_id, key_id, payload FROM inbox_parked ORDER BY id")
	require.NoError(t, err)
	parked, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct {
		EventID uuid.UUID
		KeyID   string
		Payload []byte
	}])
	require.NoError(t, err)
	require.Len(t, parked, len(ids))
	for n, p := range parked {
		plain, err := inbox.OpenParked(retired, "projector", p.EventID, p.KeyID, p.Payload)
		require.NoError(t, err)
		require.Equal(t, fmt.Sprintf("12 Main Street #%d", n), string(plain))
	}

	t.Run("a payload under a key no longer held is named and counted", func(t *testing.T) {
		stray := servicetest.Keyring(t, "gone")
		id := uuid.New()
		kid, sealed, err := stray.Seal([]byte("x"), inbox.ParkedAAD("projector", id))
		require.NoError(t, err)
		park(id, sealed, kid)
		stats, err := inbox.ResealParked(ctx, pool, retired)
		require.ErrorContains(t, err, `unknown key id "gone"`)
		require.Equal(t, 1, stats.Failed)
	})
}

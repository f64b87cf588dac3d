package inbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/inbox/inboxdb"
	"github.com/goodgo/goodgo/platform/keyring"
)

// ErrNoKeys is returned by New without Options.Keys: parked payloads are
// never written in the clear.
var ErrNoKeys = errors.New("inbox: no keyring to seal parked payloads")

// parkedAAD binds a sealed parked payload to its consumer and event.
func parkedAAD(consumer string, eventID uuid.UUID) []byte {
	return []byte("inbox_parked/" + consumer + "/" + eventID.String())
}

// OpenParked opens the payload of a parked event, for an operator's tool
// that replays or inspects it. keyID "" is a payload parked in the clear by
// a release before sealing.
func OpenParked(keys *keyring.Keyring, consumer string, eventID uuid.UUID, keyID string, payload []byte) ([]byte, error) {
	if keyID == "" {
		return payload, nil
	}
	plain, err := keys.Open(keyID, payload, parkedAAD(consumer, eventID))
	if err != nil {
		return nil, fmt.Errorf("inbox: open parked event %s of %s: %w", eventID, consumer, err)
	}
	return plain, nil
}

const resealPage = 500

// ResealParked seals every parked payload of the database that is in the
// clear or under another key than keys' active one under the active key,
// while consumers run: a row is replaced only if it is unchanged since read.
func ResealParked(ctx context.Context, db inboxdb.DBTX, keys *keyring.Keyring) (keyring.ResealStats, error) {
	q := inboxdb.New(db)
	return keyring.Reseal(ctx, keyring.Pages[int64, inboxdb.ListParkedPayloadsRow]{
		Page: func(ctx context.Context, after int64) ([]inboxdb.ListParkedPayloadsRow, error) {
			rows, err := q.ListParkedPayloads(ctx, inboxdb.ListParkedPayloadsParams{After: after, PageSize: resealPage})
			if err != nil {
				return nil, fmt.Errorf("inbox: reseal: list after %d: %w", after, err)
			}
			return rows, nil
		},
		Size:    resealPage,
		Key:     func(row inboxdb.ListParkedPayloadsRow) int64 { return row.ID },
		Current: func(row inboxdb.ListParkedPayloadsRow) bool { return row.KeyID == keys.ActiveKeyID() },
		Reseal: func(ctx context.Context, row inboxdb.ListParkedPayloadsRow) (bool, error) {
			done, err := resealOne(ctx, q, keys, row)
			if err != nil {
				return false, fmt.Errorf("inbox: reseal: %w", err)
			}
			return done, nil
		},
	})
}
func resealOne(ctx context.Context, q *inboxdb.Queries, keys *keyring.Keyring, row inboxdb.ListParkedPayloadsRow) (bool, error) {
	plain, err := OpenParked(keys, row.Consumer, row.EventID, row.KeyID, row.Payload)
	if err != nil {
		return false, err
	}
	kid, sealed, err := keys.Seal(plain, parkedAAD(row.Consumer, row.EventID))
	if err != nil {
		return false, fmt.Errorf("parked event %s: %w", row.EventID, err)
	}
	n, err := q.ResealParkedPayload(ctx, inboxdb.ResealParkedPayloadParams{
		ID: row.ID, Sealed: sealed, KeyID: kid, ReadKeyID: row.KeyID, ReadSealed: row.Payload,
	})
	if err != nil {
		return false, fmt.Errorf("parked event %s: %w", row.EventID, err)
	}
	return n == 1, nil
}

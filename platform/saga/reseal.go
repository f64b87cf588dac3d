package saga

import (
	"context"
	"fmt"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/saga/sagadb"
)

const resealPage = 500

// ResealContexts seals every saga context that is under another key than
// keys' active one under the active key, while engines run: a row is
// replaced only if its context is unchanged since read, and its version is
// left alone. After it, the old key can be removed from every replica's
// keyring. It walks the table once in id order; run it again after a
// failure.
func ResealContexts(ctx context.Context, db DB, keys *keyring.Keyring) (keyring.ResealStats, error) {
	q := sagadb.New(db)
	return keyring.Reseal(ctx, keyring.Pages[uuid.UUID, sagadb.ListSagaContextsRow]{
		Page: func(ctx context.Context, after uuid.UUID) ([]sagadb.ListSagaContextsRow, error) {
			rows, err := q.ListSagaContexts(ctx, sagadb.ListSagaContextsParams{After: after, PageSize: resealPage})
			if err != nil {
				return nil, fmt.Errorf("saga: reseal: list after %s: %w", after, err)
			}
			return rows, nil
		},
		Size:    resealPage,
		Key:     func(row sagadb.ListSagaContextsRow) uuid.UUID { return row.ID },
		Current: func(row sagadb.ListSagaContextsRow) bool { return row.KeyID == keys.ActiveKeyID() },
		Reseal: func(ctx context.Context, row sagadb.ListSagaContextsRow) (bool, error) {
			done, err := resealContext(ctx, q, keys, row)
			if err != nil {
				return false, fmt.Errorf("saga: reseal %s: %w", row.ID, err)
			}
			return done, nil
		},
	})
}

func resealContext(ctx context.Context, q *sagadb.Queries, keys *keyring.Keyring, row sagadb.ListSagaContextsRow) (bool, error) {
	plain, err := keys.Open(row.KeyID, row.Context, row.ID[:])
	if err != nil {
		return false, err
	}
	kid, sealed, err := keys.Seal(plain, row.ID[:])
	if err != nil {
		return false, err
	}
	n, err := q.ResealSagaContext(ctx, sagadb.ResealSagaContextParams{
		ID: row.ID, Sealed: sealed, KeyID: kid, ReadKeyID: row.KeyID, ReadSealed: row.Context,
	})
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

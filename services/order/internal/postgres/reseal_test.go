package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/optlock"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/services/order/internal/order"
	"github.com/goodgo/goodgo/services/order/internal/postgres"
)

// plaintextRows counts orders whose stored address bytes contain s.
func (b testBundle) plaintextRows(t *testing.T, s string) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM orders WHERE position(convert_to($1, 'UTF8') IN shipping_address) > 0", s).Scan(&n))
	return n
}

// toPlaintext stores an order's address in the clear, as releases before
// sealing did.
func (b testBundle) toPlaintext(t *testing.T, id string) {
	t.Helper()
	_, err := b.pool.Exec(context.Background(), `UPDATE orders SET shipping_address_key_id = '',
		shipping_address = convert_to('{"name":"Old","line1":"9 Legacy Road","city":"Leeds","postal_code":"LS1","country_code":"GB"}', 'UTF8')
		WHERE id = $1`, id)
	require.NoError(t, err)
}

func TestAddressIsSealedAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()

	_, err := postgres.NewRepository(b.pool, nil, nil)
	require.ErrorIs(t, err, postgres.ErrNoKeys, "no keyring, no repository: nothing is written in the clear")

	o, _, err := b.repo.Create(ctx, newOrder(t), newKey())
	require.NoError(t, err)
	require.Zero(t, b.plaintextRows(t, "Main St"))
	require.Zero(t, b.plaintextRows(t, "London"))
	var kid string
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT shipping_address_key_id FROM orders WHERE id = $1", o.ID).Scan(&kid))
	require.Equal(t, "p1", kid)
	got, err := b.repo.Get(ctx, o.ID)
	require.NoError(t, err)
	require.Equal(t, o.ShippingAddress, got.ShippingAddress)

	t.Run("an address moved to another order does not open, and says which key", func(t *testing.T) {
		other, _, err := b.repo.Create(ctx, newOrder(t), newKey())
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, "UPDATE orders SET shipping_address = (SELECT shipping_address FROM orders WHERE id = $1) WHERE id = $2", o.ID, other.ID)
		require.NoError(t, err)
		_, err = b.repo.Get(ctx, other.ID)
		require.ErrorIs(t, err, keyring.ErrDecrypt)
		require.ErrorContains(t, err, `key "p1"`)
	})
	t.Run("a retired key is named", func(t *testing.T) {
		_, err := newRepository(t, b.pool, nil, newKeyring(t, "p2")).Get(ctx, o.ID)
		require.ErrorIs(t, err, keyring.ErrUnknownKey)
		require.ErrorContains(t, err, `"p1"`)
	})
	t.Run("an address from before sealing still reads, and the next write seals it", func(t *testing.T) {
		legacy, _, err := b.repo.Create(ctx, newOrder(t), newKey())
		require.NoError(t, err)
		b.toPlaintext(t, legacy.ID)
		got, err := b.repo.Get(ctx, legacy.ID)
		require.NoError(t, err)
		require.Equal(t, "9 Legacy Road", got.ShippingAddress.Line1)
		_, err = b.repo.Update(ctx, legacy.ID, func(o *order.Order) (order.Change, error) { return o.Cancel("test", time.Now()) })
		require.NoError(t, err)
		require.Zero(t, b.plaintextRows(t, "Legacy Road"))
	})
}

// TestResealUnderLoad rotates the PII key the way the runbook does while
// orders are placed, changed and read: every replica already holds both
// keys and writes with the new one; then Reseal runs. No read fails, and
// afterwards a keyring without the old key opens every address and no
// address is left in the clear.
func TestResealUnderLoad(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	w, err := outbox.NewWriter(b.keys, prometheus.NewRegistry())
	require.NoError(t, err)
	before := newRepository(t, b.pool, w, newKeyring(t, "p1", "p2"))
	after := newRepository(t, b.pool, w, newKeyring(t, "p2", "p1"))

	const n = 300
	ids := make([]string, n)
	for i := range ids {
		o, _, err := before.Create(ctx, newOrder(t), newKey())
		require.NoError(t, err)
		ids[i] = o.ID
		if i%10 == 0 {
			b.toPlaintext(t, o.ID)
		}
	}

	var (
		wg                     sync.WaitGroup
		mu                     sync.Mutex
		failures               []error
		reads, writes, created atomic.Int64
	)
	loadCtx, stop := context.WithCancel(ctx)
	fail := func(err error) {
		mu.Lock()
		failures = append(failures, err)
		mu.Unlock()
	}
	for g := range 4 {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				id := ids[rand.IntN(n)]
				switch g {
				case 0: // new orders
					if _, _, err := after.Create(ctx, newOrder(t), newKey()); err != nil {
						fail(err)
					}
					created.Add(1)
				case 1: // address changes race the reseal of the same rows
					_, err := after.Update(ctx, id, func(o *order.Order) (order.Change, error) {
						a := o.ShippingAddress
						a.Line2 = fmt.Sprintf("Flat %d", rand.IntN(100))
						return o.ChangeShippingAddress(a, time.Now())
					})
					if err != nil && !errorsIsConflict(err) {
						fail(err)
					}
					writes.Add(1)
				default: // reads through both generations of replicas
					repo := before
					if g == 3 {
						repo = after
					}
					if _, err := repo.Get(ctx, id); err != nil {
						fail(fmt.Errorf("read %s: %w", id, err))
					}
					reads.Add(1)
				}
			}
		})
	}
	stats, err := after.Reseal(ctx)
	stop()
	wg.Wait()
	require.NoError(t, err)
	require.Empty(t, failures)
	require.Positive(t, reads.Load())
	require.Positive(t, writes.Load())
	require.Zero(t, stats.Failed)
	require.GreaterOrEqual(t, stats.Scanned, n)
	t.Logf("resealed %d of %d scanned during %d reads, %d address changes, %d new orders",
		stats.Resealed, stats.Scanned, reads.Load(), writes.Load(), created.Load())

	var stale int
	require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM orders WHERE shipping_address_key_id <> 'p2'").Scan(&stale))
	require.Zero(t, stale, "every address is under the new key")
	require.Zero(t, b.plaintextRows(t, "Legacy Road"), "no address left in the clear")
	require.Zero(t, b.plaintextRows(t, "Main St"))
	retired := newRepository(t, b.pool, w, newKeyring(t, "p2"))
	for _, id := range ids {
		_, err := retired.Get(ctx, id)
		require.NoError(t, err, "the old key can go")
	}
	again, err := after.Reseal(ctx)
	require.NoError(t, err)
	require.Zero(t, again.Resealed, "a second run has nothing to do")
}

func errorsIsConflict(err error) bool { return errors.Is(err, optlock.ErrConflict) }

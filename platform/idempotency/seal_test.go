package idempotency_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/servicetest"
)

const secret = "Jane Roe, 12 Main Street, Springfield"

func completed(t *testing.T, s *idempotency.RedisStore, key string) {
	t.Helper()
	resp, err := anypb.New(wrapperspb.String(secret))
	require.NoError(t, err)
	owner := idempotency.NewOwner()
	rec, err := s.Claim(t.Context(), key, owner, sha256Sum([]byte(key)), time.Minute)
	require.NoError(t, err)
	require.Nil(t, rec)
	require.NoError(t, s.Complete(t.Context(), key, owner,
		idempotency.Outcome{Status: status.New(codes.OK, "").Proto(), Response: resp}, time.Hour))
}

func replayed(t *testing.T, s *idempotency.RedisStore, key string) error {
	rec, err := s.Claim(t.Context(), key, idempotency.NewOwner(), sha256Sum([]byte(key)), time.Minute)
	if err != nil {
		return err
	}
	if rec == nil || rec.State != idempotency.Completed {
		return fmt.Errorf("record %s: not completed: %+v", key, rec)
	}
	var got wrapperspb.StringValue
	if err := rec.Outcome.Response.UnmarshalTo(&got); err != nil {
		return err
	}
	if got.GetValue() != secret {
		return fmt.Errorf("record %s: replayed %q", key, got.GetValue())
	}
	return nil
}

// rawFields returns the sealed fields of every record under prefix, named
// "<record key>/st" and "<record key>/r".
func rawFields(t *testing.T, prefix string) map[string][]byte {
	t.Helper()
	rdb, _ := newRedis(t)
	out := make(map[string][]byte)
	iter := rdb.Scan(t.Context(), 0, prefix+"*", 1000).Iterator()
	for iter.Next(t.Context()) {
		v, err := rdb.Get(t.Context(), iter.Val()).Result()
		require.NoError(t, err)
		st, r, err := idempotency.SealedFields(v)
		if err != nil {
			continue // in progress
		}
		out[iter.Val()+"/st"] = []byte(st)
		if r != "" {
			out[iter.Val()+"/r"] = []byte(r)
		}
	}
	require.NoError(t, iter.Err())
	return out
}

// tamper replaces the sealed fields of the completed record at key.
func tamper(t *testing.T, rdb redis.UniversalClient, key string, st, r []byte) {
	t.Helper()
	v, err := rdb.Get(t.Context(), key).Result()
	require.NoError(t, err)
	changed, err := idempotency.WithSealedFields(v, st, r)
	require.NoError(t, err)
	require.NoError(t, rdb.Set(t.Context(), key, changed, redis.KeepTTL).Err())
}

// sealedBy opens v, the field named "<record key>/<field>" by rawFields,
// with keys and returns the id of the key that sealed it.
func sealedBy(keys *keyring.Keyring, name string, v []byte) (string, error) {
	i := strings.LastIndexByte(name, '/')
	_, kid, err := keys.OpenValue(v, idempotency.FieldAAD(name[:i], name[i+1:]))
	return kid, err
}

func TestStoredRepliesAreSealed(t *testing.T) {
	rdb, prefix := newRedis(t)

	_, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc"})
	require.ErrorIs(t, err, idempotency.ErrNoKeys, "no keyring, no store: nothing is written in the clear")

	keys := servicetest.Keyring(t, "k1")
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: keys})
	require.NoError(t, err)
	completed(t, store, "a")
	completed(t, store, "b")
	require.NoError(t, replayed(t, store, "a"))

	raw := rawFields(t, prefix)
	require.Len(t, raw, 4, "st and r of two records")
	for field, v := range raw {
		require.NotContains(t, string(v), "Main Street", field)
		kid, err := sealedBy(keys, field, v)
		require.NoError(t, err, field)
		require.Equal(t, "k1", kid, field)
	}

	t.Run("a sealed reply moved to another record does not open", func(t *testing.T) {
		tamper(t, rdb, prefix+"svc:b", raw[prefix+"svc:b/st"], raw[prefix+"svc:a/r"])
		err := replayed(t, store, "b")
		require.ErrorIs(t, err, keyring.ErrDecrypt)
		require.ErrorContains(t, err, `key "k1"`)
	})
	t.Run("a reply in the clear is refused, not replayed", func(t *testing.T) {
		plain, err := proto.Marshal(status.New(codes.NotFound, "gone").Proto())
		require.NoError(t, err)
		tamper(t, rdb, prefix+"svc:a", plain, raw[prefix+"svc:a/r"])
		require.ErrorIs(t, replayed(t, store, "a"), keyring.ErrNotSealed)
		tamper(t, rdb, prefix+"svc:a", nil, raw[prefix+"svc:a/r"])
		require.ErrorIs(t, replayed(t, store, "a"), keyring.ErrNotSealed, "an OK status in the clear is empty: refused too")
	})
	t.Run("a retired key is named", func(t *testing.T) {
		completed(t, store, "c")
		other, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: servicetest.Keyring(t, "k2")})
		require.NoError(t, err)
		err = replayed(t, other, "c")
		require.ErrorIs(t, err, keyring.ErrUnknownKey)
		require.ErrorContains(t, err, `"k1"`)
	})
}

// TestResealUnderLoad rotates the key while replays and new calls run: no
// replay fails, and afterwards a keyring without the old key opens every
// record.
func TestResealUnderLoad(t *testing.T) {
	rdb, prefix := newRedis(t)
	oldKeys := servicetest.Keyring(t, "k1")
	newKey := servicetest.Keyring(t, "k2")
	both := servicetest.Keyring(t, "k2", "k1")
	before, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: oldKeys})
	require.NoError(t, err)
	after, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: both})
	require.NoError(t, err)

	const n = 300
	for i := range n {
		completed(t, before, fmt.Sprintf("old-%d", i))
	}
	inProgress := idempotency.NewOwner()
	_, err = before.Claim(t.Context(), "pending", inProgress, sha256Sum([]byte("pending")), time.Minute)
	require.NoError(t, err)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		stop     = make(chan struct{})
	)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				if w == 0 {
					completed(t, after, fmt.Sprintf("new-%d", i))
				} else {
					err = replayed(t, after, fmt.Sprintf("old-%d", (i*7+w)%n))
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		})
	}
	stats, err := after.Reseal(t.Context())
	close(stop)
	wg.Wait()
	require.NoError(t, err)
	require.Empty(t, failures, "no replay failed during the rotation")
	require.Equal(t, n, stats.Resealed)
	require.Zero(t, stats.Failed)

	retired, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: newKey})
	require.NoError(t, err)
	for i := range n {
		require.NoError(t, replayed(t, retired, fmt.Sprintf("old-%d", i)))
	}
	for field, v := range rawFields(t, prefix) {
		kid, err := sealedBy(newKey, field, v)
		require.NoError(t, err, field)
		require.Equal(t, "k2", kid, field)
		require.False(t, strings.Contains(string(v), "Main Street"), field)
	}
	again, err := after.Reseal(t.Context())
	require.NoError(t, err)
	require.Zero(t, again.Resealed, "a second run has nothing to do")
	require.NoError(t, after.Complete(t.Context(), "pending", inProgress,
		idempotency.Outcome{Status: status.New(codes.OK, "").Proto()}, time.Hour), "a claim in progress is left to its owner")
}

package idempotency_test

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/goodgo/goodgo/platform/idempotency"
)

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestKey(t *testing.T) {
	k := idempotency.Key("alice", "/svc/M", "k1")
	require.Len(t, k, 64)
	require.Regexp(t, "^[0-9a-f]{64}$", k)
	require.Equal(t, k, idempotency.Key("alice", "/svc/M", "k1"), "deterministic")

	distinct := map[string]bool{}
	for _, parts := range [][3]string{
		{"alice", "/svc/M", "k1"},
		{"alice", "/svc/M", "k2"},
		{"bob", "/svc/M", "k1"},
		{"alice", "/svc/N", "k1"},
		{"ab", "c", "d"}, {"a", "bc", "d"}, {"a", "b", "cd"}, // concatenations alike
		{"", "", ""},
	} {
		distinct[idempotency.Key(parts[0], parts[1], parts[2])] = true
	}
	require.Len(t, distinct, 8, "no two scopes share a key")
}

func TestRedisStoreContract(t *testing.T) {
	rdb, prefix := newRedis(t)
	store := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix})
	ctx := t.Context()
	fp := sha256Sum([]byte("request"))
	resp, err := anypb.New(wrapperspb.String("done"))
	require.NoError(t, err)
	okOutcome := idempotency.Outcome{Status: status.New(codes.OK, "").Proto(), Response: resp}

	t.Run("claim, then completed record is returned", func(t *testing.T) {
		c, err := store.Claim(ctx, "k1", fp, time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, c.Owner)
		require.Nil(t, c.Existing)

		dup, err := store.Claim(ctx, "k1", sha256Sum([]byte("other")), time.Minute)
		require.NoError(t, err)
		require.Empty(t, dup.Owner)
		require.Equal(t, idempotency.InProgress, dup.Existing.State)
		require.Equal(t, fp, dup.Existing.Fingerprint, "the first claim's fingerprint is kept")

		require.ErrorIs(t, store.Complete(ctx, "k1", "not-the-owner", okOutcome, time.Hour), idempotency.ErrNotOwner)
		require.ErrorIs(t, store.Release(ctx, "k1", "not-the-owner"), idempotency.ErrNotOwner)
		require.NoError(t, store.Complete(ctx, "k1", c.Owner, okOutcome, time.Hour))
		require.ErrorIs(t, store.Complete(ctx, "k1", c.Owner, okOutcome, time.Hour), idempotency.ErrNotOwner, "completion happens once")
		require.ErrorIs(t, store.Release(ctx, "k1", c.Owner), idempotency.ErrNotOwner, "a completed record cannot be released")

		got, err := store.Claim(ctx, "k1", fp, time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Completed, got.Existing.State)
		require.Equal(t, fp, got.Existing.Fingerprint)
		require.True(t, proto.Equal(okOutcome.Status, got.Existing.Outcome.Status))
		require.True(t, proto.Equal(okOutcome.Response, got.Existing.Outcome.Response))
	})

	t.Run("release frees the key", func(t *testing.T) {
		c, err := store.Claim(ctx, "k2", fp, time.Minute)
		require.NoError(t, err)
		require.NoError(t, store.Release(ctx, "k2", c.Owner))
		again, err := store.Claim(ctx, "k2", fp, time.Minute)
		require.NoError(t, err)
		require.NotEmpty(t, again.Owner)
		require.NotEqual(t, c.Owner, again.Owner, "owner tokens are unique")
		require.ErrorIs(t, store.Release(ctx, "k2", c.Owner), idempotency.ErrNotOwner, "a stale owner cannot release the new claim")
	})

	t.Run("an expired claim cannot complete", func(t *testing.T) {
		c, err := store.Claim(ctx, "k3", fp, 50*time.Millisecond)
		require.NoError(t, err)
		var next idempotency.Claim
		require.Eventually(t, func() bool {
			next, err = store.Claim(ctx, "k3", fp, time.Minute)
			return err == nil && next.Owner != ""
		}, 5*time.Second, 20*time.Millisecond)
		require.ErrorIs(t, store.Complete(ctx, "k3", c.Owner, okOutcome, time.Hour), idempotency.ErrNotOwner)
		require.NoError(t, store.Complete(ctx, "k3", next.Owner, okOutcome, time.Hour))
	})

	t.Run("prefix is applied", func(t *testing.T) {
		_, err := store.Claim(ctx, "k4", fp, time.Minute)
		require.NoError(t, err)
		n, err := rdb.Exists(ctx, prefix+"k4").Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	})
}

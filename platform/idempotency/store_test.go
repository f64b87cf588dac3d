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
	store := newStore(t, rdb, prefix)
	ctx := t.Context()
	fp := sha256Sum([]byte("request"))
	resp, err := anypb.New(wrapperspb.String("done"))
	require.NoError(t, err)
	okOutcome := idempotency.Outcome{Status: status.New(codes.OK, "").Proto(), Response: resp}

	t.Run("claim, then completed record is returned", func(t *testing.T) {
		owner := idempotency.NewOwner()
		existing, err := store.Claim(ctx, "k1", owner, fp, time.Minute)
		require.NoError(t, err)
		require.Nil(t, existing, "claimed")

		dup, err := store.Claim(ctx, "k1", idempotency.NewOwner(), sha256Sum([]byte("other")), time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.InProgress, dup.State)
		require.Equal(t, fp, dup.Fingerprint, "the first claim's fingerprint is kept")

		require.ErrorIs(t, store.Complete(ctx, "k1", "not-the-owner", okOutcome, time.Hour), idempotency.ErrNotOwner)
		require.ErrorIs(t, store.Release(ctx, "k1", "not-the-owner"), idempotency.ErrNotOwner)
		require.NoError(t, store.Complete(ctx, "k1", owner, okOutcome, time.Hour))
		// go-redis retries EVALSHA when the reply is lost: the repeated
		// completion succeeds and keeps the first outcome.
		other := idempotency.Outcome{Status: status.New(codes.NotFound, "other").Proto()}
		require.NoError(t, store.Complete(ctx, "k1", owner, other, time.Hour), "a repeated completion succeeds")
		require.ErrorIs(t, store.Release(ctx, "k1", owner), idempotency.ErrNotOwner, "a completed record cannot be released")

		got, err := store.Claim(ctx, "k1", owner, fp, time.Minute)
		require.NoError(t, err)
		require.NotNil(t, got, "a completed record is not claimed again, not even by its owner")
		require.Equal(t, idempotency.Completed, got.State)
		require.Equal(t, fp, got.Fingerprint)
		require.True(t, proto.Equal(okOutcome.Status, got.Outcome.Status))
		require.True(t, proto.Equal(okOutcome.Response, got.Outcome.Response))
	})

	t.Run("a claim repeated by its owner is claimed again", func(t *testing.T) {
		// go-redis retries EVALSHA when the reply times out: the first run
		// may have claimed the key. The retry must not see its own claim as
		// somebody else's in-progress call.
		owner := idempotency.NewOwner()
		first, err := store.Claim(ctx, "k5", owner, fp, time.Minute)
		require.NoError(t, err)
		require.Nil(t, first)
		retried, err := store.Claim(ctx, "k5", owner, fp, time.Minute)
		require.NoError(t, err)
		require.Nil(t, retried, "the same owner's claim is a successful claim")

		other, err := store.Claim(ctx, "k5", idempotency.NewOwner(), fp, time.Minute)
		require.NoError(t, err)
		require.NotNil(t, other, "another owner still finds it in progress")
		require.Equal(t, idempotency.InProgress, other.State)
		require.NoError(t, store.Complete(ctx, "k5", owner, okOutcome, time.Hour), "and the owner completes it")
	})

	t.Run("an empty owner is refused", func(t *testing.T) {
		_, err := store.Claim(ctx, "k6", "", fp, time.Minute)
		require.Error(t, err)
	})

	t.Run("release frees the key", func(t *testing.T) {
		owner := idempotency.NewOwner()
		_, err := store.Claim(ctx, "k2", owner, fp, time.Minute)
		require.NoError(t, err)
		require.NoError(t, store.Release(ctx, "k2", owner))
		next := idempotency.NewOwner()
		require.NotEqual(t, owner, next, "owner tokens are unique")
		again, err := store.Claim(ctx, "k2", next, fp, time.Minute)
		require.NoError(t, err)
		require.Nil(t, again)
		require.ErrorIs(t, store.Release(ctx, "k2", owner), idempotency.ErrNotOwner, "a stale owner cannot release the new claim")
	})

	t.Run("an expired claim cannot complete", func(t *testing.T) {
		owner := idempotency.NewOwner()
		_, err := store.Claim(ctx, "k3", owner, fp, 50*time.Millisecond)
		require.NoError(t, err)
		next := idempotency.NewOwner()
		require.Eventually(t, func() bool {
			existing, err := store.Claim(ctx, "k3", next, fp, time.Minute)
			return err == nil && existing == nil
		}, 5*time.Second, 20*time.Millisecond)
		require.ErrorIs(t, store.Complete(ctx, "k3", owner, okOutcome, time.Hour), idempotency.ErrNotOwner)
		require.NoError(t, store.Complete(ctx, "k3", next, okOutcome, time.Hour))
	})

	t.Run("prefix is applied", func(t *testing.T) {
		_, err := store.Claim(ctx, "k4", idempotency.NewOwner(), fp, time.Minute)
		require.NoError(t, err)
		n, err := rdb.Exists(ctx, prefix+"svc:k4").Result()
		require.NoError(t, err)
		require.Equal(t, int64(1), n)
	})
}

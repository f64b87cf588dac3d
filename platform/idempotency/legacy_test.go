package idempotency_test

import (
	"context"
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

// writeLegacy stores a record as the releases before string records did:
// a hash of s, f, o and, once completed, st and r sealed.
func writeLegacy(t *testing.T, rdb redis.UniversalClient, keys *keyring.Keyring, key, state, owner string, fp []byte, out *idempotency.Outcome) {
	t.Helper()
	fields := []any{"s", state, "f", fp, "o", owner}
	if out != nil {
		st, err := proto.Marshal(out.Status)
		require.NoError(t, err)
		sealedSt, err := keys.SealValue(st, idempotency.FieldAAD(key, "st"))
		require.NoError(t, err)
		var sealedR []byte
		if out.Response != nil {
			r, err := proto.Marshal(out.Response)
			require.NoError(t, err)
			sealedR, err = keys.SealValue(r, idempotency.FieldAAD(key, "r"))
			require.NoError(t, err)
		}
		fields = append(fields, "st", sealedSt, "r", sealedR)
	}
	require.NoError(t, rdb.HSet(t.Context(), key, fields...).Err())
	require.NoError(t, rdb.PExpire(t.Context(), key, time.Hour).Err())
}

// TestLegacyRecordsDuringAnUpgrade: records an earlier release stored as
// hashes are replayed, found in progress, compared by fingerprint and
// resealed; none is ever claimed or changed by this release's owners.
func TestLegacyRecordsDuringAnUpgrade(t *testing.T) {
	rdb, prefix := newRedis(t)
	oldKeys := servicetest.Keyring(t, "k1")
	store, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: servicetest.Keyring(t, "k2", "k1")})
	require.NoError(t, err)
	ctx := t.Context()
	fp := sha256Sum([]byte("request"))
	resp, err := anypb.New(wrapperspb.String("placed"))
	require.NoError(t, err)
	placed := idempotency.Outcome{Status: status.New(codes.OK, "").Proto(), Response: resp}
	refused := idempotency.Outcome{Status: status.New(codes.FailedPrecondition, "out of stock").Proto()}
	writeLegacy(t, rdb, oldKeys, prefix+"svc:done", "c", "old-owner", fp, &placed)
	writeLegacy(t, rdb, oldKeys, prefix+"svc:refused", "c", "old-owner", fp, &refused)
	writeLegacy(t, rdb, oldKeys, prefix+"svc:running", "p", "old-owner", fp, nil)

	t.Run("a completed call is replayed", func(t *testing.T) {
		for key, want := range map[string]idempotency.Outcome{"done": placed, "refused": refused} {
			rec, err := store.Claim(ctx, key, idempotency.NewOwner(), fp, time.Minute)
			require.NoError(t, err, key)
			require.NotNil(t, rec, "%s: not claimed again", key)
			require.Equal(t, idempotency.Completed, rec.State, key)
			require.Equal(t, fp, rec.Fingerprint, key)
			require.True(t, proto.Equal(want.Status, rec.Outcome.Status), key)
			require.True(t, proto.Equal(want.Response, rec.Outcome.Response), key)
		}
	})
	t.Run("a call in progress stays in progress", func(t *testing.T) {
		rec, err := store.Claim(ctx, "running", idempotency.NewOwner(), sha256Sum([]byte("other")), time.Minute)
		require.NoError(t, err)
		require.NotNil(t, rec)
		require.Equal(t, idempotency.InProgress, rec.State)
		require.Equal(t, fp, rec.Fingerprint, "the guard compares it: another request is refused")
	})
	t.Run("no owner of this release holds a legacy record", func(t *testing.T) {
		for _, owner := range []string{"old-owner", idempotency.NewOwner()} {
			require.ErrorIs(t, store.Renew(ctx, "running", owner, time.Minute), idempotency.ErrNotOwner)
			require.ErrorIs(t, store.Complete(ctx, "running", owner, placed, time.Hour), idempotency.ErrNotOwner)
			require.ErrorIs(t, store.Release(ctx, "running", owner), idempotency.ErrNotOwner)
		}
		state, err := rdb.HGet(ctx, prefix+"svc:running", "s").Result()
		require.NoError(t, err)
		require.Equal(t, "p", state, "unchanged")
	})
	t.Run("a reseal moves them to the active key", func(t *testing.T) {
		stats, err := store.Reseal(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, stats.Resealed, "the two completed records")
		retired, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: prefix, Service: "svc", Keys: servicetest.Keyring(t, "k2")})
		require.NoError(t, err)
		rec, err := retired.Claim(ctx, "done", idempotency.NewOwner(), fp, time.Minute)
		require.NoError(t, err)
		require.True(t, proto.Equal(placed.Response, rec.Outcome.Response))
		ttl, err := rdb.PTTL(ctx, prefix+"svc:done").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 30*time.Minute, "the expiry is kept")
	})
	t.Run("once one expires, the key is claimed as a string", func(t *testing.T) {
		require.NoError(t, rdb.Del(ctx, prefix+"svc:running").Err())
		owner := idempotency.NewOwner()
		rec, err := store.Claim(ctx, "running", owner, fp, time.Minute)
		require.NoError(t, err)
		require.Nil(t, rec, "claimed")
		typ, err := rdb.Type(ctx, prefix+"svc:running").Result()
		require.NoError(t, err)
		require.Equal(t, "string", typ)
		require.NoError(t, store.Complete(ctx, "running", owner, placed, time.Hour))
	})
}

// TestClaimIsOneNativeCommand: a first call's claim and a replay are one
// SET each, not a script, so Redis runs no Lua for them.
func TestClaimIsOneNativeCommand(t *testing.T) {
	rdb, prefix := newRedis(t)
	names := &commandNames{}
	rdb.AddHook(names)
	store := newStore(t, rdb, prefix)
	fp := sha256Sum([]byte("request"))
	owner := idempotency.NewOwner()

	rec, err := store.Claim(t.Context(), "k", owner, fp, time.Minute)
	require.NoError(t, err)
	require.Nil(t, rec)
	require.Equal(t, []string{"set"}, names.take(), "the claim")
	require.NoError(t, store.Complete(t.Context(), "k", owner, idempotency.Outcome{Status: status.New(codes.OK, "").Proto()}, time.Hour))
	require.Equal(t, []string{"evalsha"}, names.take(), "the completion compares the owner: a script")
	rec, err = store.Claim(t.Context(), "k", idempotency.NewOwner(), fp, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Completed, rec.State)
	require.Equal(t, []string{"set"}, names.take(), "the replay")
}

// commandNames is a go-redis hook that records the names of the commands
// sent, alone or in pipelines. It never blocks a command: the test's
// cleanup scans the whole keyspace through the same client.
type commandNames struct {
	mu    sync.Mutex
	names []string
}

func (c *commandNames) record(cmds ...redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, cmd := range cmds {
		if n := cmd.Name(); n != "hello" && n != "client" {
			c.names = append(c.names, n)
		}
	}
}

// take returns the names recorded since the last take.
func (c *commandNames) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.names
	c.names = nil
	return out
}

func (c *commandNames) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandNames) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.record(cmd)
		return next(ctx, cmd)
	}
}
func (c *commandNames) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.record(cmds...)
		return next(ctx, cmds)
	}
}

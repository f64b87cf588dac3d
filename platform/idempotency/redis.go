package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/goodgo/goodgo/platform/keyring"
)

// DefaultPrefix is the Redis key prefix used when RedisOptions.Prefix is empty.
const DefaultPrefix = "idem:"

// RedisOptions configures a RedisStore.
type RedisOptions struct {
	// Prefix is prepended to every key; DefaultPrefix if empty.
	Prefix string
	// Service names the service whose records these are (required); it
	// follows Prefix in every key. Services may share a Redis and a
	// prefix, but each seals its records with its own PII keys, so each
	// keeps (and reseals, and forgets) only its own.
	Service string
	// Keys seal the stored outcomes (required): a reply can hold personal
	// data, such as a shipping address, kept for a day for replays.
	Keys *keyring.Keyring
	// MaxPipelines is how many pipelines of claims, completions, renewals
	// and releases may be in flight at once; the calls of concurrent
	// requests that arrive meanwhile share the next round trip (see
	// batcher). DefaultMaxPipelines if 0.
	MaxPipelines int
	// MaxBatch caps the calls of one pipeline. DefaultMaxBatch if 0.
	MaxBatch int
}

// RedisStore is a Store on Redis or Redis Cluster. A record is one hash
//
//	s  state: "p" (in progress) or "c" (completed)
//	f  request fingerprint
//	o  owner token (kept once completed, for a repeated Complete)
//	st google.rpc.Status, protobuf-encoded, once completed
//	r  google.protobuf.Any of the response, once completed with OK
//
// st and r are sealed with the PII keyring (keyring.SealValue, bound to
// the record's key and field), so Redis never holds a reply in the clear.
// The record's PEXPIRE is the claim's lease while in progress (set by
// Claim, pushed out by Renew) and the replay TTL once completed.
// Each method is one Lua script on one key (EVALSHA), which makes it atomic
// and valid on Redis Cluster. The scripts of concurrent requests share
// round trips: they go out together in one pipeline (batcher), each with
// its own reply.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	keys   *keyring.Keyring
	// batch pipelines the scripts; nil sends each alone (the benchmarks'
	// comparison).
	batch *batcher
}

var _ Store = (*RedisStore)(nil)

// ErrNoKeys is returned by NewRedisStore without RedisOptions.Keys: a store
// never writes replies in the clear.
var ErrNoKeys = errors.New("idempotency: no keyring to seal stored replies")

// NewRedisStore returns a Store over client; the client stays the caller's
// to close.
func NewRedisStore(client redis.UniversalClient, opts RedisOptions) (*RedisStore, error) {
	if opts.Keys == nil {
		return nil, ErrNoKeys
	}
	if opts.Service == "" {
		return nil, errors.New("idempotency: RedisOptions.Service is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.MaxPipelines < 0 || opts.MaxBatch < 0 {
		return nil, fmt.Errorf("idempotency: MaxPipelines %d and MaxBatch %d must not be negative", opts.MaxPipelines, opts.MaxBatch)
	}
	return &RedisStore{
		client: client,
		prefix: opts.Prefix + opts.Service + ":",
		keys:   opts.Keys,
		batch:  newBatcher(client, opts.MaxPipelines, opts.MaxBatch),
	}, nil
}

// run runs script on key with args, in a pipeline shared with concurrent
// callers. On error the returned command is a fresh one holding it: the
// batched command may still be written by a pipeline its caller stopped
// waiting for.
func (s *RedisStore) run(ctx context.Context, script *redis.Script, key string, args ...any) *redis.Cmd {
	if s.batch == nil {
		return script.Run(ctx, s.client, []string{key}, args...)
	}
	// One allocation for the command's arguments: appending args to a
	// four-element literal would copy it into a second.
	cmdArgs := make([]any, 0, 4+len(args))
	cmdArgs = append(cmdArgs, "evalsha", script.Hash(), 1, key)
	cmd := redis.NewCmd(ctx, append(cmdArgs, args...)...)
	err := s.batch.do(ctx, cmd)
	switch {
	case err == nil:
		return cmd
	case redis.HasErrorPrefix(err, "NOSCRIPT"):
		// Redis lost its scripts (a restart, SCRIPT FLUSH): EVAL loads
		// this one again. Alone, as it is rare.
		return script.Run(ctx, s.client, []string{key}, args...)
	}
	failed := redis.NewCmd(ctx)
	failed.SetErr(err)
	return failed
}

// claimScript returns an empty array after claiming, else the record's s, f,
// st, r, o. (Not nil: go-redis treats a nil reply as an error, a slower
// path.) A record in progress for ARGV owner is this same claim run again
// (go-redis retries a command whose reply timed out): claimed, unchanged.
// KEYS[1] record; ARGV owner, fingerprint, lock TTL in ms.
var claimScript = redis.NewScript(`
local rec = redis.call('HMGET', KEYS[1], 's', 'f', 'st', 'r', 'o')
if rec[1] == 'p' and rec[5] == ARGV[1] then return {} end
if rec[1] then return rec end
redis.call('HSET', KEYS[1], 's', 'p', 'f', ARGV[2], 'o', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {}
`)

// completeScript returns 1 if owner held the claim and it is now completed,
// or if owner completed it already (go-redis retried the script after a
// lost reply: the first run's outcome stays). The owner token is kept for
// that check. KEYS[1] record; ARGV owner, status, response, TTL in ms.
var completeScript = redis.NewScript(`
local rec = redis.call('HMGET', KEYS[1], 's', 'o')
if rec[2] ~= ARGV[1] then return 0 end
if rec[1] == 'c' then return 1 end
redis.call('HSET', KEYS[1], 's', 'c', 'st', ARGV[2], 'r', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
`)

// renewScript returns 1 if owner holds the claim in progress and its
// expiry is now lock TTL away, else 0, changing nothing: a completed record
// keeps its TTL, and a claim that expired is not brought back. KEYS[1]
// record; ARGV owner, lock TTL in ms.
var renewScript = redis.NewScript(`
local rec = redis.call('HMGET', KEYS[1], 's', 'o')
if rec[1] ~= 'p' or rec[2] ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// releaseScript returns 1 if owner held the claim and it is now deleted. A
// completed record is never deleted. KEYS[1] record; ARGV owner.
var releaseScript = redis.NewScript(`
local rec = redis.call('HMGET', KEYS[1], 's', 'o')
if rec[1] ~= 'p' or rec[2] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)

// Claim implements Store.
func (s *RedisStore) Claim(ctx context.Context, key, owner string, fingerprint []byte, lockTTL time.Duration) (*Record, error) {
	if owner == "" {
		return nil, errors.New("idempotency: claim: empty owner token")
	}
	stored := s.prefix + key
	res, err := s.run(ctx, claimScript, stored, owner, fingerprint, lockTTL.Milliseconds()).Slice()
	if err != nil {
		return nil, fmt.Errorf("idempotency: claim: %w", err)
	}
	if len(res) == 0 {
		return nil, nil
	}
	rec, err := s.decodeRecord(stored, res)
	if err != nil {
		return nil, fmt.Errorf("idempotency: claim: %w", err)
	}
	return rec, nil
}

// Complete implements Store.
func (s *RedisStore) Complete(ctx context.Context, key, owner string, out Outcome, ttl time.Duration) error {
	st, err := proto.Marshal(out.Status)
	if err != nil {
		return fmt.Errorf("idempotency: complete: marshal status: %w", err)
	}
	var resp []byte
	if out.Response != nil {
		if resp, err = proto.Marshal(out.Response); err != nil {
			return fmt.Errorf("idempotency: complete: marshal response: %w", err)
		}
	}
	stored := s.prefix + key
	if st, resp, err = s.seal(stored, st, resp); err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	done, err := s.run(ctx, completeScript, stored, owner, st, resp, ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("idempotency: complete: %w", err)
	}
	if done == 0 {
		return ErrNotOwner
	}
	return nil
}

// Renew implements Store.
func (s *RedisStore) Renew(ctx context.Context, key, owner string, lockTTL time.Duration) error {
	done, err := s.run(ctx, renewScript, s.prefix+key, owner, lockTTL.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("idempotency: renew: %w", err)
	}
	if done == 0 {
		return ErrNotOwner
	}
	return nil
}

// Release implements Store.
func (s *RedisStore) Release(ctx context.Context, key, owner string) error {
	done, err := s.run(ctx, releaseScript, s.prefix+key, owner).Int()
	if err != nil {
		return fmt.Errorf("idempotency: release: %w", err)
	}
	if done == 0 {
		return ErrNotOwner
	}
	return nil
}

// trackKey is the set of a scope's tracked record keys. The scope is
// hashed like the record keys, so no user id is readable in Redis.
func (s *RedisStore) trackKey(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return s.prefix + "track:" + hex.EncodeToString(sum[:])
}

// Track implements Store: the record key joins the scope's set, whose
// expiry is pushed out to ttl. One round trip.
func (s *RedisStore) Track(ctx context.Context, scope, key string, ttl time.Duration) error {
	set := s.trackKey(scope)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, set, key)
		p.PExpire(ctx, set, ttl)
		return nil
	})
	if err != nil {
		return fmt.Errorf("idempotency: track: %w", err)
	}
	return nil
}

// Forget implements Store. The records may live in other cluster slots
// than the set, so they are deleted one command each, pipelined; the set
// goes last, so that a Forget cut short can be run again.
func (s *RedisStore) Forget(ctx context.Context, scope string) (int, error) {
	set := s.trackKey(scope)
	keys, err := s.client.SMembers(ctx, set).Result()
	if err != nil {
		return 0, fmt.Errorf("idempotency: forget: %w", err)
	}
	dels := make([]*redis.IntCmd, len(keys))
	if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			dels[i] = p.Del(ctx, s.prefix+k)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("idempotency: forget: %w", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	if err := s.client.Del(ctx, set).Err(); err != nil {
		return n, fmt.Errorf("idempotency: forget: %w", err)
	}
	return n, nil
}

// seal seals a record's status and response; an absent response stays
// empty.
func (s *RedisStore) seal(key string, st, resp []byte) (sealedSt, sealedResp []byte, err error) {
	if sealedSt, err = s.keys.SealValue(st, fieldAAD(key, "st")); err != nil {
		return nil, nil, fmt.Errorf("seal status: %w", err)
	}
	if len(resp) > 0 {
		if sealedResp, err = s.keys.SealValue(resp, fieldAAD(key, "r")); err != nil {
			return nil, nil, fmt.Errorf("seal response: %w", err)
		}
	}
	return sealedSt, sealedResp, nil
}

// open opens a sealed field of the record at key and returns the id of
// the key that sealed it. An empty response stays empty (there was none);
// the status is always sealed, so an empty one is refused.
func (s *RedisStore) open(key, field, v string) ([]byte, string, error) {
	if v == "" && field == "r" {
		return nil, "", nil
	}
	pt, kid, err := s.keys.OpenValue([]byte(v), fieldAAD(key, field))
	if err != nil {
		return nil, kid, fmt.Errorf("open field %s: %w", field, err)
	}
	return pt, kid, nil
}

// fieldAAD binds a sealed field to its record and field, so that a value
// copied to another record or field does not open.
func fieldAAD(key, field string) []byte {
	aad := make([]byte, 0, len(key)+1+len(field))
	return append(append(append(aad, key...), 0), field...)
}

// decodeRecord decodes claimScript's reply [s, f, st, r, o] for the record
// at key.
func (s *RedisStore) decodeRecord(key string, res []any) (*Record, error) {
	if len(res) != 5 {
		return nil, fmt.Errorf("unexpected reply of %d fields", len(res))
	}
	field := func(i int) string { s, _ := res[i].(string); return s }
	rec := &Record{Fingerprint: []byte(field(1))}
	switch field(0) {
	case "p":
		rec.State = InProgress
		return rec, nil
	case "c":
		rec.State = Completed
	default:
		return nil, fmt.Errorf("unknown record state %q", field(0))
	}
	st, _, err := s.open(key, "st", field(2))
	if err != nil {
		return nil, err
	}
	rec.Outcome.Status = new(spb.Status)
	if err := proto.Unmarshal(st, rec.Outcome.Status); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	resp, _, err := s.open(key, "r", field(3))
	if err != nil {
		return nil, err
	}
	if len(resp) > 0 {
		rec.Outcome.Response = new(anypb.Any)
		if err := proto.Unmarshal(resp, rec.Outcome.Response); err != nil {
			return nil, fmt.Errorf("decode response: %w", err)
		}
	}
	return rec, nil
}

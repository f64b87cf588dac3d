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

// RedisStore is a Store on Redis (7.0 or later) or Redis Cluster. A
// record is one string (see record.go): its state, owner token and request
// fingerprint, and once completed the google.rpc.Status and the response's
// google.protobuf.Any, both sealed with the PII keyring (keyring.SealValue,
// bound to the record's key and field), so Redis never holds a reply in the
// clear. Its expiry is the claim's lease while in progress (set by Claim,
// pushed out by Renew) and the replay TTL once completed.
//
// A claim is one native command, SET NX PX GET: it stores the claim if no
// record exists and returns the record that does, so a replay costs Redis
// one command. Complete, Renew and Release compare the owner first, so
// each is a Lua script on one key (EVALSHA): atomic, and valid on Redis
// Cluster. The commands of concurrent requests share round trips: they go
// out together in one pipeline (batcher), each with its own reply.
//
// Records written by earlier releases, as hashes, are still read (legacy.go)
// until they expire.
type RedisStore struct {
	client redis.UniversalClient
	prefix string
	keys   *keyring.Keyring
	// batch pipelines the commands; nil sends each alone (the benchmarks'
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

// send runs cmd in a pipeline shared with concurrent callers. On error
// the caller must not read cmd: the batched command may still be written by
// a pipeline its caller stopped waiting for.
func (s *RedisStore) send(ctx context.Context, cmd redis.Cmder) error {
	if s.batch == nil {
		return s.client.Process(ctx, cmd)
	}
	return s.batch.do(ctx, cmd)
}

// run runs script on key with args, in a pipeline shared with concurrent
// callers, and returns its integer reply.
func (s *RedisStore) run(ctx context.Context, script *redis.Script, key string, args ...any) (int64, error) {
	if s.batch == nil {
		return script.Run(ctx, s.client, []string{key}, args...).Int64()
	}
	// One allocation for the command's arguments: appending args to a
	// four-element literal would copy it into a second.
	cmdArgs := make([]any, 0, 4+len(args))
	cmdArgs = append(cmdArgs, "evalsha", script.Hash(), 1, key)
	cmd := redis.NewIntCmd(ctx, append(cmdArgs, args...)...)
	err := s.batch.do(ctx, cmd)
	switch {
	case err == nil:
		return cmd.Val(), nil
	case redis.HasErrorPrefix(err, "NOSCRIPT"):
		// Redis lost its scripts (a restart, SCRIPT FLUSH): EVAL loads
		// this one again. Alone, as it is rare.
		return script.Run(ctx, s.client, []string{key}, args...).Int64()
	}
	return 0, err
}

// The scripts read the record with redis.pcall: a legacy hash record
// (WRONGTYPE for GET) is never the owner's, since this store claims with
// strings, so it is "not the owner", not an error.

// completeScript returns 1 if owner held the claim and it is now completed,
// or if owner completed it already (go-redis retried the script after a
// lost reply: the first run's outcome stays). The owner is kept for that
// check. KEYS[1] record; ARGV owner field (length byte, owner), the
// completion (sealed status and response), TTL in ms.
var completeScript = redis.NewScript(`
local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or string.sub(rec, 2, #ARGV[1] + 1) ~= ARGV[1] then return 0 end
local state = string.sub(rec, 1, 1)
if state == 'c' then return 1 end
if state ~= 'p' then return 0 end
redis.call('SET', KEYS[1], 'c' .. string.sub(rec, 2) .. ARGV[2], 'PX', ARGV[3])
return 1
`)

// renewScript returns 1 if owner holds the claim in progress and its
// expiry is now lock TTL away, else 0, changing nothing: a completed record
// keeps its TTL, and a claim that expired is not brought back. KEYS[1]
// record; ARGV 'p' and the owner field, lock TTL in ms.
var renewScript = redis.NewScript(`
local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or string.sub(rec, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// releaseScript returns 1 if owner held the claim and it is now deleted. A
// completed record is never deleted. KEYS[1] record; ARGV 'p' and the owner
// field.
var releaseScript = redis.NewScript(`
local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or string.sub(rec, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
`)

// Claim implements Store: SET NX PX GET claims the key if it has no record
// and returns the one it has. A record in progress for owner is this same
// claim run again (go-redis retries a command whose reply timed out):
// claimed, unchanged.
func (s *RedisStore) Claim(ctx context.Context, key, owner string, fingerprint []byte, lockTTL time.Duration) (*Record, error) {
	if err := checkFields(owner, fingerprint); err != nil {
		return nil, fmt.Errorf("idempotency: claim: %w", err)
	}
	stored := s.prefix + key
	for range 3 {
		cmd := redis.NewStringCmd(ctx, "set", stored, claimValue(owner, fingerprint), "px", lockTTL.Milliseconds(), "nx", "get")
		err := s.send(ctx, cmd)
		switch {
		case err == nil: // the record the key has
		case errors.Is(err, redis.Nil):
			return nil, nil // claimed
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			// A hash: a record of an earlier release.
			rec, err := s.claimLegacy(ctx, stored)
			if errors.Is(err, errExpired) {
				continue // it expired between the two commands: claim again
			}
			if err != nil {
				return nil, fmt.Errorf("idempotency: claim: %w", err)
			}
			return rec, nil
		default:
			return nil, fmt.Errorf("idempotency: claim: %w", err)
		}
		raw, err := parseRecord(cmd.Val())
		if err != nil {
			return nil, fmt.Errorf("idempotency: claim: %w", err)
		}
		if raw.state == stateInProgress && raw.owner == owner {
			return nil, nil
		}
		rec, err := s.decodeRecord(stored, raw)
		if err != nil {
			return nil, fmt.Errorf("idempotency: claim: %w", err)
		}
		return rec, nil
	}
	return nil, errors.New("idempotency: claim: the record kept changing type")
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
	done, err := s.run(ctx, completeScript, stored, claimedBy(owner)[1:], completion(st, resp), ttl.Milliseconds())
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
	done, err := s.run(ctx, renewScript, s.prefix+key, claimedBy(owner), lockTTL.Milliseconds())
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
	done, err := s.run(ctx, releaseScript, s.prefix+key, claimedBy(owner))
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

// decodeRecord opens and decodes the record raw found at key.
func (s *RedisStore) decodeRecord(key string, raw rawRecord) (*Record, error) {
	rec := &Record{Fingerprint: []byte(raw.fingerprint)}
	if raw.state == stateInProgress {
		rec.State = InProgress
		return rec, nil
	}
	rec.State = Completed
	if err := s.openOutcome(key, raw.st, raw.r, &rec.Outcome); err != nil {
		return nil, err
	}
	return rec, nil
}

// openOutcome opens and decodes a completed record's sealed status and
// response into out.
func (s *RedisStore) openOutcome(key, sealedSt, sealedR string, out *Outcome) error {
	st, _, err := s.open(key, "st", sealedSt)
	if err != nil {
		return err
	}
	out.Status = new(spb.Status)
	if err := proto.Unmarshal(st, out.Status); err != nil {
		return fmt.Errorf("decode status: %w", err)
	}
	resp, _, err := s.open(key, "r", sealedR)
	if err != nil {
		return err
	}
	if len(resp) > 0 {
		out.Response = new(anypb.Any)
		if err := proto.Unmarshal(resp, out.Response); err != nil {
			return fmt.Errorf("decode response: %w", err)
		}
	}
	return nil
}

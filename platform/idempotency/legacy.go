package idempotency

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// Records of earlier releases are Redis hashes:
//
//	s  state: "p" (in progress) or "c" (completed)
//	f  request fingerprint
//	o  owner token
//	st google.rpc.Status, sealed, once completed
//	r  google.protobuf.Any of the response, sealed, once completed with OK
//
// During a rolling upgrade, and for one TTL after it, such records are still
// replayed (a retry of a call an old replica served is answered, not run
// again) and resealed on a key rotation. A claim finds them with WRONGTYPE:
// this store never writes a hash, so a hash record is never its own claim,
// and the scripts treat it as another owner's. The other way round, an old
// replica cannot read a string record and answers Unavailable (a refusal:
// the retry runs on a new replica), so an upgrade never runs a call twice.
// This file can go once every replica runs this release and one TTL
// (IDEMPOTENCY_TTL, 24 h by default) has passed.

// errExpired reports a legacy record that expired between two commands.
var errExpired = errors.New("record expired")

// claimLegacy returns the legacy record at key (a full Redis key), or
// errExpired if it is gone: the claim can then be tried again.
func (s *RedisStore) claimLegacy(ctx context.Context, key string) (*Record, error) {
	cmd := redis.NewSliceCmd(ctx, "hmget", key, "s", "f", "st", "r")
	if err := s.send(ctx, cmd); err != nil {
		return nil, fmt.Errorf("legacy record: %w", err)
	}
	res := cmd.Val()
	field := func(i int) string { v, _ := res[i].(string); return v }
	if len(res) != 4 {
		return nil, fmt.Errorf("legacy record: unexpected reply of %d fields", len(res))
	}
	rec := &Record{Fingerprint: []byte(field(1))}
	switch field(0) {
	case "":
		return nil, errExpired
	case "p":
		rec.State = InProgress
		return rec, nil
	case "c":
		rec.State = Completed
	default:
		return nil, fmt.Errorf("legacy record: unknown state %q", field(0))
	}
	if err := s.openOutcome(key, field(2), field(3), &rec.Outcome); err != nil {
		return nil, fmt.Errorf("legacy record: %w", err)
	}
	return rec, nil
}

// resealLegacyScript replaces a completed legacy record's sealed fields if
// they are still the ones read (a concurrent Forget wins); the expiry is
// kept. KEYS[1] record; ARGV old st, old r, new st, new r.
var resealLegacyScript = redis.NewScript(`
local rec = redis.call('HMGET', KEYS[1], 's', 'st', 'r')
if rec[1] ~= 'c' or rec[2] ~= ARGV[1] or (rec[3] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[3], 'r', ARGV[4])
return 1
`)

// resealLegacy reseals the legacy record at key if it is completed and
// sealed under another key than the active one.
func (s *RedisStore) resealLegacy(ctx context.Context, key string) (bool, error) {
	rec, err := s.client.HMGet(ctx, key, "s", "st", "r").Result()
	if err != nil {
		return false, err
	}
	field := func(i int) string { v, _ := rec[i].(string); return v }
	if field(0) != "c" {
		return false, nil // in progress: an old replica's Complete seals it
	}
	oldSt, oldR := field(1), field(2)
	newSt, newR, resealed, err := s.resealFields(key, oldSt, oldR)
	if err != nil || !resealed {
		return false, err
	}
	n, err := resealLegacyScript.Run(ctx, s.client, []string{key}, oldSt, oldR, newSt, newR).Int()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

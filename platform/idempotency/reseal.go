package idempotency

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/goodgo/goodgo/platform/keyring"
)

// resealScript replaces a completed record's sealed fields if they are
// still the ones read (a concurrent Complete or Forget wins); the expiry is
// kept. KEYS[1] record; ARGV old st, old r, new st, new r.
var resealScript = redis.NewScript(`
local rec = redis.call('HMGET', KEYS[1], 's', 'st', 'r')
if rec[1] ~= 'c' or rec[2] ~= ARGV[1] or (rec[3] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'st', ARGV[3], 'r', ARGV[4])
return 1
`)

// Reseal seals every completed record that is not under the active key
// again under it, while the store serves: each record is replaced only if
// it is unchanged since read. It is the Redis part of a key rotation; the
// records expire within the TTL anyway, so running it lets the old key be
// retired without waiting for them. On Redis Cluster it scans every
// primary.
func (s *RedisStore) Reseal(ctx context.Context) (keyring.ResealStats, error) {
	var (
		stats keyring.ResealStats
		errs  []error
	)
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		iter := node.Scan(ctx, 0, escapeGlob(s.prefix)+"*", 500).Iterator()
		for iter.Next(ctx) {
			key := iter.Val()
			if strings.HasPrefix(key, s.prefix+"track:") {
				continue
			}
			done, err := s.resealOne(ctx, key)
			switch {
			case err != nil:
				stats.Failed++
				errs = append(errs, fmt.Errorf("record %s: %w", key, err))
			case done:
				stats.Resealed++
			}
			stats.Scanned++
		}
		return iter.Err()
	}
	var err error
	if cluster, ok := s.client.(*redis.ClusterClient); ok {
		// ForEachMaster runs concurrently; the counters are not shared
		// safely, so the primaries are walked one after another instead.
		var masters []*redis.Client
		err = cluster.ForEachMaster(ctx, func(_ context.Context, c *redis.Client) error {
			masters = append(masters, c)
			return nil
		})
		for _, m := range masters {
			if err != nil {
				break
			}
			err = scan(ctx, m)
		}
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("idempotency: reseal: scan: %w", err))
	}
	return stats, errors.Join(errs...)
}

// resealOne reseals the record at key (a full Redis key) if it is
// completed and sealed under another key than the active one.
func (s *RedisStore) resealOne(ctx context.Context, key string) (bool, error) {
	rec, err := s.client.HMGet(ctx, key, "s", "st", "r").Result()
	if err != nil {
		return false, err
	}
	field := func(i int) string { v, _ := rec[i].(string); return v }
	if field(0) != "c" {
		return false, nil // in progress: its Complete seals under the active key
	}
	oldSt, oldR := field(1), field(2)
	st, kid, err := s.open(key, "st", oldSt)
	if err != nil {
		return false, err
	}
	resp, rkid, err := s.open(key, "r", oldR)
	if err != nil {
		return false, err
	}
	active := s.keys.ActiveKeyID()
	if kid == active && (oldR == "" || rkid == active) {
		return false, nil
	}
	newSt, newR, err := s.seal(key, st, resp)
	if err != nil {
		return false, err
	}
	n, err := resealScript.Run(ctx, s.client, []string{key}, oldSt, oldR, newSt, newR).Int()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// escapeGlob escapes the glob characters of SCAN's MATCH in a literal.
func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

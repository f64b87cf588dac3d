package idempotency

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/goodgo/goodgo/platform/keyring"
)

// resealScript replaces a completed record if it is still the one read (a
// concurrent Forget wins); the expiry is kept. KEYS[1] record; ARGV the
// record read, the record resealed.
var resealScript = redis.NewScript(`
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
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
	v, err := s.client.Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return false, nil // gone: expired or forgotten
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		return s.resealLegacy(ctx, key)
	case err != nil:
		return false, err
	}
	raw, err := parseRecord(v)
	if err != nil {
		return false, err
	}
	if raw.state != stateCompleted {
		return false, nil // in progress: its Complete seals under the active key
	}
	st, r, resealed, err := s.resealFields(key, raw.st, raw.r)
	if err != nil || !resealed {
		return false, err
	}
	n, err := resealScript.Run(ctx, s.client, []string{key}, v, raw.completedWith(st, r)).Int()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// resealFields seals a record's sealed status and response again under the
// active key. resealed is false, and nothing returned, if both are under
// it already.
func (s *RedisStore) resealFields(key, sealedSt, sealedR string) (st, r []byte, resealed bool, err error) {
	plainSt, kid, err := s.open(key, "st", sealedSt)
	if err != nil {
		return nil, nil, false, err
	}
	plainR, rkid, err := s.open(key, "r", sealedR)
	if err != nil {
		return nil, nil, false, err
	}
	active := s.keys.ActiveKeyID()
	if kid == active && (sealedR == "" || rkid == active) {
		return nil, nil, false, nil
	}
	if st, r, err = s.seal(key, plainSt, plainR); err != nil {
		return nil, nil, false, err
	}
	return st, r, true, nil
}

// escapeGlob escapes the glob characters of SCAN's MATCH in a literal.
func escapeGlob(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)
	return r.Replace(s)
}

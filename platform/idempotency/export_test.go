package idempotency

// Unbatched makes s send each script alone, in its own round trip, as it
// did before batching: the benchmarks compare the two.
func Unbatched(s *RedisStore) { s.batch = nil }

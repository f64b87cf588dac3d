package idempotency

// Unbatched makes s send each script alone, in its own round trip, as it
// did before batching: the benchmarks compare the two.
func Unbatched(s *RedisStore) { s.batch = nil }

// FieldAAD is the additional data that binds a sealed field to its record
// (its full Redis key) and field: for the tests that open what the store
// wrote.
var FieldAAD = fieldAAD

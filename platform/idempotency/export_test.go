package idempotency

import "errors"

// Unbatched makes s send each command alone, in its own round trip, as it
// did before batching: the benchmarks compare the two.
func Unbatched(s *RedisStore) { s.batch = nil }

// FieldAAD is the additional data that binds a sealed field to its record
// (its full Redis key) and field: for the tests that open what the store
// wrote.
var FieldAAD = fieldAAD

// SealedFields returns the sealed status and response of v, a completed
// record as stored.
func SealedFields(v string) (st, r string, err error) {
	raw, err := parseRecord(v)
	if err == nil && raw.state != stateCompleted {
		err = errors.New("not completed")
	}
	return raw.st, raw.r, err
}

// WithSealedFields returns v, a completed record as stored, with its sealed
// status and response replaced.
func WithSealedFields(v string, st, r []byte) (string, error) {
	raw, err := parseRecord(v)
	if err != nil {
		return "", err
	}
	return string(raw.completedWith(st, r)), nil
}

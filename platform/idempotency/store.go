package idempotency

import (
	"context"
	"errors"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// ErrNotOwner reports that a claim is no longer held by its owner: it
// expired (and may have been claimed again) or was completed already.
var ErrNotOwner = errors.New("idempotency: claim not held")

// State is the state of a stored record.
type State int

const (
	// InProgress: claimed, the handler has not finished.
	InProgress State = iota + 1
	// Completed: the outcome is stored for replay.
	Completed
)

// Record is what a Store holds under a key.
type Record struct {
	State State
	// Fingerprint identifies the request that claimed the key.
	Fingerprint []byte
	// Outcome is set when State is Completed.
	Outcome Outcome
}

// Outcome is a completed call's result, as replayed to retries.
type Outcome struct {
	// Status is the call's status: code OK for a success, else the code,
	// message and details the handler returned.
	Status *spb.Status
	// Response is the response message (anypb.New) when Status.Code is OK.
	Response *anypb.Any
}

// Claim is the result of [Store.Claim]: exactly one field is set.
type Claim struct {
	// Owner is the token proving this caller holds the new claim.
	Owner string
	// Existing is the record that was already stored; nothing was claimed.
	Existing *Record
}

// Store holds idempotency records. Implementations are safe for concurrent
// use by many processes: each method is atomic with respect to the others on
// the same key. Keys are already hashed ([Key]). Every method honours ctx
// cancellation and returns store failures as errors (the [Guard] treats any
// error other than ErrNotOwner as the store being unavailable).
type Store interface {
	// Claim takes key if no record exists: it stores an InProgress record
	// with fingerprint, expiring after lockTTL, and returns its owner token.
	// If a record exists, Claim changes nothing and returns it.
	Claim(ctx context.Context, key string, fingerprint []byte, lockTTL time.Duration) (Claim, error)
	// Complete turns owner's InProgress record into a Completed one holding
	// out, expiring after ttl. It returns ErrNotOwner, changing nothing, if
	// owner no longer holds key.
	Complete(ctx context.Context, key, owner string, out Outcome, ttl time.Duration) error
	// Release deletes owner's InProgress record so that the next request with
	// the key runs. It returns ErrNotOwner, changing nothing, if owner no
	// longer holds key.
	Release(ctx context.Context, key, owner string) error
}

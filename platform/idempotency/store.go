package idempotency

import (
	"context"
	"crypto/rand"
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

// NewOwner returns a fresh owner token for [Store.Claim]: 26 random
// base32 characters (130 bits), unique across processes.
func NewOwner() string {
	return rand.Text()
}

// Store holds idempotency records. Implementations are safe for concurrent
// use by many processes: each method is atomic with respect to the others on
// the same key. Keys are already hashed ([Key]). Every method honours ctx
// cancellation and returns store failures as errors (the [Guard] treats any
// error other than ErrNotOwner as the store being unavailable).
//
// A client library may repeat a call whose reply was lost (go-redis does,
// after a read timeout). Claim must treat its repetition as the same claim,
// which is why the caller chooses the owner token before the first try, and
// a repeated Complete must succeed without changing the record. A repeated
// Release finds its work done and reports ErrNotOwner, which the Guard only
// logs.
type Store interface {
	// Claim takes key for owner (a token from [NewOwner], chosen before the
	// call) if no record exists: it stores an InProgress record with
	// fingerprint, expiring after lockTTL, and returns nil. A record that
	// is owner's own InProgress claim also counts as claimed (nil): that is
	// this same claim, tried again after its reply was lost. Any other
	// record is left unchanged and returned.
	Claim(ctx context.Context, key, owner string, fingerprint []byte, lockTTL time.Duration) (existing *Record, err error)
	// Complete turns owner's InProgress record into a Completed one holding
	// out, expiring after ttl; a record owner completed already is left as
	// it is (nil). It returns ErrNotOwner, changing nothing, if owner no
	// longer holds key.
	Complete(ctx context.Context, key, owner string, out Outcome, ttl time.Duration) error
	// Renew extends owner's InProgress claim of key to expire lockTTL from
	// now: the lease of a holder that is alive and still running. It
	// returns ErrNotOwner, changing nothing, if owner no longer holds key
	// in progress (the claim expired, was taken by another owner, was
	// completed or released). Renewing twice is harmless.
	Renew(ctx context.Context, key, owner string, lockTTL time.Duration) error
	// Release deletes owner's InProgress record so that the next request with
	// the key runs. It returns ErrNotOwner, changing nothing, if owner no
	// longer holds key.
	Release(ctx context.Context, key, owner string) error
	// Track notes that key holds a sensitive call of scope (a user), for
	// Forget, for at least ttl. Tracking a key twice is harmless.
	Track(ctx context.Context, scope, key string, ttl time.Duration) error
	// Forget deletes every record tracked for scope, whatever its state,
	// and returns how many existed.
	Forget(ctx context.Context, scope string) (int, error)
}

// Package outbox implements the transactional outbox of DESIGN.md "Outbox":
// a service appends its domain events to the outbox table inside the same
// local transaction as the business change (Writer.Append), and a relay
// publishes committed rows to Kafka afterwards, so an event is published if
// and only if its business change committed (at least once).
//
// The table is the canonical DDL in db/outbox/schema/outbox.sql, copied into
// every emitting service's migrations. This package owns its storage
// contract: lane assignment (Lane), the payload encoding (binary protobuf,
// optionally sealed with a keyring for PII) and the trace-context columns.
//
// The relay side lives here too: Record is an outbox row as the relay reads
// it, Decrypt restores a PII payload before publishing, and outboxdb holds
// the relay's queries (lane leases, mark published, park, janitor,
// statistics). The relay itself (services/outbox-relay/internal/relay:
// lease lanes, publish each lane in id order, mark after the broker's ack)
// builds on these.
package outbox

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/keyring"
)

// Lanes is the number of lanes the outbox is partitioned into. A lane is the
// unit of relay ownership: one relay replica at a time leases a lane and
// publishes its rows in id order, which keeps each aggregate's events in
// order while spreading the work.
//
// Lanes and Lane are part of the storage contract: rows carry their lane
// number. Changing either re-partitions aggregates, so an aggregate could
// have unpublished rows in two lanes owned by two replicas and its events
// could be published out of order. Never change them without first draining
// the outbox (stop writers or wait until no row is unpublished).
const Lanes = 32

// Lane returns the lane of an aggregate: FNV-1a (32 bit) of the aggregate id
// modulo Lanes. See Lanes for why it must never change.
func Lane(aggregateID string) int16 {
	// FNV-1a inlined (same result as hash/fnv.New32a) to avoid allocating a
	// hasher per event.
	const offset32, prime32 = 2166136261, 16777619
	h := uint32(offset32)
	for i := 0; i < len(aggregateID); i++ {
		h ^= uint32(aggregateID[i])
		h *= prime32
	}
	return int16(h % Lanes)
}

// Record is one outbox row as the relay reads it. Its field names match the
// column names, so pgx.RowToStructByName scans a `SELECT id, event_id, …`
// straight into it.
type Record struct {
	ID               int64
	EventID          uuid.UUID
	Lane             int16
	Topic            string
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	EventType        string
	ContentType      string
	// Payload is the encoded event, sealed with the keyring when KeyID is
	// not empty (see Decrypt).
	Payload     []byte
	KeyID       string
	Traceparent string
	Tracestate  string
	OccurredAt  time.Time
	Attempts    int32
}

// ErrNoKeyring is returned when a payload must be sealed or opened but no
// keyring was configured.
var ErrNoKeyring = errors.New("outbox: PII event but no keyring configured")

// Decrypt replaces r.Payload by its plaintext and clears r.KeyID when the
// payload is encrypted (KeyID != ""); a plaintext record is left unchanged,
// so Decrypt may be called on every record and more than once. The
// additional data is the event id, so a ciphertext copied to another row
// fails. Errors wrap keyring.ErrUnknownKey (the key was retired too early or
// is not configured on this replica), keyring.ErrDecrypt (corrupted or moved
// payload) or ErrNoKeyring; on error r is unchanged.
func Decrypt(keys *keyring.Keyring, r *Record) error {
	if r.KeyID == "" {
		return nil
	}
	if keys == nil {
		return fmt.Errorf("decrypt event %s: %w", r.EventID, ErrNoKeyring)
	}
	plaintext, err := keys.Open(r.KeyID, r.Payload, r.EventID[:])
	if err != nil {
		return fmt.Errorf("outbox: decrypt event %s: %w", r.EventID, err)
	}
	r.Payload, r.KeyID = plaintext, ""
	return nil
}

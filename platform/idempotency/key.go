package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MetadataKey is the gRPC metadata entry carrying the client's key.
const MetadataKey = "idempotency-key"

// MaxKeyLength is the longest client key accepted, in characters.
const MaxKeyLength = 255

// ReplayedHeader is set to "true" in the response header metadata of a
// replayed outcome.
const ReplayedHeader = "idempotent-replayed"

// Key returns the store key for a client key: the hex SHA-256 of caller id,
// full method name and client key, each length-prefixed so that no two
// different triples encode alike.
func Key(callerID, method, clientKey string) string {
	h := sha256.New()
	var n [4]byte
	for _, part := range [...]string{callerID, method, clientKey} {
		binary.BigEndian.PutUint32(n[:], uint32(len(part)))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))
}

type keyCtx struct{}

// KeyFromContext returns the hashed idempotency key ([Key]) of the guarded
// call whose handler received ctx. Handlers store it in their own unique
// column so that the database rejects a duplicate Redis did not catch.
func KeyFromContext(ctx context.Context) (string, bool) {
	k, ok := ctx.Value(keyCtx{}).(string)
	return k, ok
}

func withKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, keyCtx{}, key)
}

// clientKey extracts and validates the idempotency-key metadata entry; its
// errors are InvalidArgument statuses naming the entry.
func clientKey(ctx context.Context) (string, error) {
	// One entry's values, not a copy of every entry (FromIncomingContext).
	values := metadata.ValueFromIncomingContext(ctx, MetadataKey)
	switch {
	case len(values) == 0 || (len(values) == 1 && values[0] == ""):
		return "", status.Error(codes.InvalidArgument, "idempotency-key metadata is required")
	case len(values) > 1:
		return "", status.Error(codes.InvalidArgument, "idempotency-key metadata must be sent once")
	}
	k := values[0]
	if len(k) > MaxKeyLength {
		return "", status.Errorf(codes.InvalidArgument, "idempotency-key must be at most %d characters", MaxKeyLength)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", status.Error(codes.InvalidArgument, "idempotency-key must be printable ASCII")
		}
	}
	return k, nil
}

// fingerprint is the SHA-256 of req's canonical protobuf encoding: a copy
// of req without unknown fields, marshalled deterministically (map entries
// ordered). Equal requests therefore hash alike however they were built,
// whether or not the client added fields this server does not know, and on
// replicas of different versions as long as both know every field the
// client set. A field that one version knows and the other does not, set by
// the client, still makes the fingerprints differ during a rollout: the
// newer replica sees a different request (and answers FailedPrecondition
// to a retry of it), which is what it is to that replica.
func fingerprint(req any) ([]byte, error) {
	msg, ok := req.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("idempotency: request %T is not a protobuf message", req)
	}
	// DiscardUnknown changes the message it is given: the handler must get
	// the request as it arrived.
	canonical := proto.Clone(msg)
	discardUnknown(canonical.ProtoReflect())
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(canonical)
	if err != nil {
		return nil, fmt.Errorf("idempotency: marshal request: %w", err)
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
}

// discardUnknown removes the unknown fields of m and of every message it
// contains, recursively.
func discardUnknown(m protoreflect.Message) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			list := v.List()
			for i := range list.Len() {
				discardUnknown(list.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				discardUnknown(mv.Message())
				return true
			})
		case fd.Message() != nil && !fd.IsMap():
			discardUnknown(v.Message())
		}
		return true
	})
	if m.GetUnknown() != nil {
		m.SetUnknown(nil)
	}
}

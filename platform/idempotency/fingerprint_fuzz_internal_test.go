package idempotency

import (
	"crypto/sha256"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/typepb"
)

// fuzzTypes are the messages the fuzz input is decoded as: maps of
// messages and recursion (Struct), repeated messages and strings (Type),
// proto2 with extension ranges and deep nesting (FileDescriptorProto).
var fuzzTypes = []func() proto.Message{
	func() proto.Message { return &structpb.Struct{} },
	func() proto.Message { return &typepb.Type{} },
	func() proto.Message { return &descriptorpb.FileDescriptorProto{} },
}

var deterministic = proto.MarshalOptions{Deterministic: true}

// FuzzFingerprint decodes arbitrary bytes as protobuf requests: the
// fingerprint must not depend on unknown fields (at any depth), must not
// change the request, must be the hash of the canonical encoding, and must
// be the same for the request re-decoded from its own encoding.
func FuzzFingerprint(f *testing.F) {
	withUnknown := func(m proto.Message, extra []byte) []byte {
		b, err := deterministic.Marshal(m)
		require.NoError(f, err)
		return append(b, extra...)
	}
	unknown := protowire.AppendTag(nil, 999, protowire.BytesType)
	unknown = protowire.AppendBytes(unknown, []byte("from a newer client"))

	s, err := structpb.NewStruct(map[string]any{
		"b": "x", "a": 1.5, "n": nil, "list": []any{true, "y", map[string]any{"deep": "z"}},
	})
	require.NoError(f, err)
	f.Add(withUnknown(s, nil))
	f.Add(withUnknown(s, unknown))
	// A nested unknown field: inside the value of one map entry.
	inner := protowire.AppendTag(nil, 1, protowire.BytesType) // Struct.fields entry
	entry := protowire.AppendTag(nil, 1, protowire.BytesType)
	entry = protowire.AppendString(entry, "k")
	entry = protowire.AppendTag(entry, 2, protowire.BytesType)
	value := protowire.AppendTag(nil, 3, protowire.BytesType) // Value.string_value
	value = protowire.AppendString(value, "v")
	value = append(value, unknown...)
	entry = protowire.AppendBytes(entry, value)
	inner = protowire.AppendBytes(inner, entry)
	f.Add(inner)
	fd := protoFileWithUnknownOptions()
	f.Add(fd)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x00})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, newMsg := range fuzzTypes {
			msg := newMsg()
			if proto.Unmarshal(data, msg) != nil {
				continue
			}
			before, err := deterministic.Marshal(msg)
			require.NoError(t, err)

			fp, err := fingerprint(msg)
			require.NoError(t, err)
			require.Len(t, fp, sha256.Size)

			after, err := deterministic.Marshal(msg)
			require.NoError(t, err)
			require.Equal(t, before, after, "fingerprint changed the request")

			// The reference copy without unknown fields, made without the
			// code under test.
			clean := newMsg()
			enc, err := proto.Marshal(msg)
			require.NoError(t, err)
			require.NoError(t, proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(enc, clean))
			fpClean, err := fingerprint(clean)
			require.NoError(t, err)
			require.Equal(t, fp, fpClean, "unknown fields changed the fingerprint")

			canonical, err := deterministic.Marshal(clean)
			require.NoError(t, err)
			sum := sha256.Sum256(canonical)
			require.Equal(t, sum[:], fp, "the fingerprint is the hash of the canonical encoding")

			again, err := fingerprint(msg)
			require.NoError(t, err)
			require.Equal(t, fp, again)

			rt := newMsg()
			require.NoError(t, proto.Unmarshal(enc, rt))
			fpRT, err := fingerprint(rt)
			require.NoError(t, err)
			require.Equal(t, fp, fpRT, "the same request, decoded again, has another fingerprint")
		}
	})
}

// protoFileWithUnknownOptions is a FileDescriptorProto with unknown fields
// in a message nested two levels deep (a field's options), and at the top.
func protoFileWithUnknownOptions() []byte {
	unknown := protowire.AppendTag(nil, 50000, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 42)
	fd := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("x.proto"),
		Package: proto.String("x"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("M"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name:    proto.String("f"),
				Number:  proto.Int32(1),
				Options: &descriptorpb.FieldOptions{},
			}},
		}},
	}
	fd.GetMessageType()[0].GetField()[0].GetOptions().ProtoReflect().SetUnknown(unknown)
	fd.ProtoReflect().SetUnknown(unknown)
	b, err := deterministic.Marshal(fd)
	if err != nil {
		panic(err)
	}
	return b
}

func TestFingerprintIgnoresNestedUnknownFields(t *testing.T) {
	withUnknown := &descriptorpb.FileDescriptorProto{}
	require.NoError(t, proto.Unmarshal(protoFileWithUnknownOptions(), withUnknown))
	require.NotEmpty(t, withUnknown.GetMessageType()[0].GetField()[0].GetOptions().ProtoReflect().GetUnknown())
	without := &descriptorpb.FileDescriptorProto{}
	require.NoError(t, proto.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(protoFileWithUnknownOptions(), without))
	require.Empty(t, without.GetMessageType()[0].GetField()[0].GetOptions().ProtoReflect().GetUnknown())

	a, err := fingerprint(withUnknown)
	require.NoError(t, err)
	b, err := fingerprint(without)
	require.NoError(t, err)
	require.Equal(t, b, a)
	require.NotEmpty(t, withUnknown.GetMessageType()[0].GetField()[0].GetOptions().ProtoReflect().GetUnknown(),
		"the request keeps its unknown fields")

	// A known field does change the fingerprint.
	without.Package = proto.String("y")
	c, err := fingerprint(without)
	require.NoError(t, err)
	require.NotEqual(t, a, c)

	_, err = fingerprint("not a message")
	require.ErrorContains(t, err, "is not a protobuf message")
}

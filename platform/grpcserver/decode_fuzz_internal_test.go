package grpcserver

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/typepb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// decodeTypes are proto3 messages (whose strings must be valid UTF-8): a
// single string, maps and recursion, repeated messages and strings.
var decodeTypes = []protoreflect.MessageDescriptor{
	(&wrapperspb.StringValue{}).ProtoReflect().Descriptor(),
	(&structpb.Struct{}).ProtoReflect().Descriptor(),
	(&typepb.Type{}).ProtoReflect().Descriptor(),
}

// requirePath checks that path names a string field of md, through message
// and map fields.
func requirePath(t *testing.T, md protoreflect.MessageDescriptor, path string) {
	t.Helper()
	segs := strings.Split(path, ".")
	cur := md
	for i, seg := range segs {
		fd := cur.Fields().ByName(protoreflect.Name(seg))
		require.NotNil(t, fd, "%s: %q is not a field of %s", path, seg, cur.FullName())
		if i == len(segs)-1 {
			require.Equal(t, protoreflect.StringKind, fd.Kind(), "%s does not end at a string field", path)
			return
		}
		require.NotNil(t, fd.Message(), "%s: %q is not a message or map field", path, seg)
		cur = fd.Message()
	}
}

func checkDecodeProblem(t *testing.T, md protoreflect.MessageDescriptor, data []byte) string {
	t.Helper()
	problem := decodeProblem(md, data)
	// The generated type, not dynamicpb: dynamicpb's map decoding panics
	// on some malformed entries (a Struct with a key-less entry whose
	// value is of the wrong wire type, found by this fuzzer), and the
	// oracle must be what the server decodes with.
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.FullName())
	require.NoError(t, err)
	decodeErr := proto.Unmarshal(data, mt.New().Interface())
	if problem == "request: not a valid "+string(md.FullName())+" message" {
		return problem
	}
	path, ok := strings.CutSuffix(problem, ": must be valid UTF-8")
	require.True(t, ok, "unexpected problem %q", problem)
	requirePath(t, md, path)
	require.Error(t, decodeErr, "%q names invalid UTF-8 in a message that decodes", problem)
	return problem
}

// FuzzDecodeProblem feeds arbitrary bytes to decodeProblem: it must never
// panic, and a field path it names must be real (its first segment a field
// of the message, each next one of the message before, ending at a string
// field) and name a problem protobuf itself refuses the message for.
func FuzzDecodeProblem(f *testing.F) {
	bad := []byte("caf\xe9")
	f.Add(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), string(bad)))
	f.Add(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "café"))
	f.Add(structWithValue(string(bad)))
	f.Add(structWithKey(string(bad)))
	f.Add(typeWithFieldName(string(bad)))
	f.Add([]byte{})
	f.Add([]byte{0x0a})
	f.Add([]byte{0x0a, 0x05, 0x01})
	f.Add([]byte{0x08, 0x96, 0x01})
	f.Add([]byte{0x0b, 0x0c})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, md := range decodeTypes {
			checkDecodeProblem(t, md, data)
		}
	})
}

func structWithValue(s string) []byte {
	value := protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), s) // Value.string_value
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "name")
	entry = protowire.AppendBytes(protowire.AppendTag(entry, 2, protowire.BytesType), value)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), entry) // Struct.fields
}

func structWithKey(s string) []byte {
	entry := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), s)
	return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), entry)
}

func typeWithFieldName(s string) []byte {
	field := protowire.AppendString(protowire.AppendTag(nil, 4, protowire.BytesType), s) // Field.name
	b := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "T")   // Type.name
	return protowire.AppendBytes(protowire.AppendTag(b, 2, protowire.BytesType), field)  // Type.fields
}

func TestDecodeProblem(t *testing.T) {
	sv := decodeTypes[0]
	st := decodeTypes[1]
	ty := decodeTypes[2]
	bad := "caf\xe9"
	tests := []struct {
		name string
		md   protoreflect.MessageDescriptor
		data []byte
		want string
	}{
		{"string", sv, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), bad), "value: must be valid UTF-8"},
		{"map value", st, structWithValue(bad), "fields.value.string_value: must be valid UTF-8"},
		{"map key", st, structWithKey(bad), "fields.key: must be valid UTF-8"},
		{"repeated message", ty, typeWithFieldName(bad), "fields.name: must be valid UTF-8"},
		{"first of two", ty, append(protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), bad), typeWithFieldName(bad)...), "name: must be valid UTF-8"},
		{"truncated", sv, []byte{0x0a, 0x05, 'a'}, "request: not a valid google.protobuf.StringValue message"},
		{"bad tag", st, []byte{0x00}, "request: not a valid google.protobuf.Struct message"},
		{"valid UTF-8", sv, protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "café"), "request: not a valid google.protobuf.StringValue message"},
		{"string as varint", sv, []byte{0x08, 0x01}, "request: not a valid google.protobuf.StringValue message"},
		{"unknown field with invalid UTF-8", sv, protowire.AppendString(protowire.AppendTag(nil, 7, protowire.BytesType), bad), "request: not a valid google.protobuf.StringValue message"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, checkDecodeProblem(t, tt.md, tt.data))
		})
	}
}

// nestedValue is google.protobuf.Value{list_value: {values: [Value{...}]}}
// depth times around Value{string_value: leaf}: a small message deeper
// than protobuf's recursion limit (10000), so that it fails to decode.
func nestedValue(depth int, leaf string) []byte {
	inner := protowire.AppendString(protowire.AppendTag(nil, 3, protowire.BytesType), leaf) // Value.string_value
	// The lengths, inside out: ListValue.values (1) in Value.list_value (6).
	nums := make([]protowire.Number, 0, 2*depth)
	lens := make([]int, 0, 2*depth)
	n := len(inner)
	for range depth {
		for _, num := range []protowire.Number{1, 6} {
			nums, lens = append(nums, num), append(lens, n)
			n = protowire.SizeTag(num) + protowire.SizeBytes(n)
		}
	}
	b := make([]byte, 0, n)
	for i := len(lens) - 1; i >= 0; i-- {
		b = protowire.AppendTag(b, nums[i], protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(lens[i]))
	}
	return append(b, inner...)
}

// decodeProblem is called for every request that fails to decode, and a
// request nested deeper than protobuf's recursion limit is one. It once
// built the path prefix of every level it descended before knowing it
// needed it: time and memory grew with the square of the depth (a 74 KB
// google.protobuf.Value nested 10000 deep allocated about 3.5 GB). It must
// stay cheap.
func TestDecodeProblemDeepNestingIsCheap(t *testing.T) {
	md := (&structpb.Value{}).ProtoReflect().Descriptor()
	b := nestedValue(10_000, "caf\xe9")
	require.Less(t, len(b), 100<<10)
	require.Error(t, proto.Unmarshal(b, &structpb.Value{}), "too deep to decode")

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	problem := decodeProblem(md, b)
	elapsed := time.Since(start)
	runtime.ReadMemStats(&after)
	require.NotEmpty(t, problem)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "allocated for a %d-byte request", len(b))
	require.Less(t, elapsed, time.Second)
}

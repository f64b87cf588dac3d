package grpcserver

import (
	"context"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A request that does not decode — most often a string field holding
// invalid UTF-8, which protobuf refuses — is the client's fault, but grpc-go
// answers every decoding failure with Internal, and does so at once, before
// the handler can say otherwise. The server therefore registers its
// services through decodeRegistrar, whose unary method handlers announce
// the message they decode into, and decodes with decodeCodec, which for an
// announced message records why it failed and reports success to grpc; the
// handler then fails the call with InvalidArgument naming the field.
// Messages nobody announced (streams, the health service) fail as before.

// decodeCodec is grpc's protobuf codec that records decoding failures of
// announced messages until the method handler collects them.
type decodeCodec struct {
	encoding.CodecV2
	announced sync.Map // message -> nil, or the problem (string) once it failed
}

func newDecodeCodec() *decodeCodec {
	return &decodeCodec{CodecV2: encoding.GetCodecV2("proto")}
}

func (c *decodeCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.CodecV2.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if _, announced := c.announced.Load(v); !ok || !announced {
		return err
	}
	// data stays valid until Unmarshal returns: grpc frees it after.
	c.announced.Store(v, decodeProblem(m.ProtoReflect().Descriptor(), data.Materialize()))
	return nil
}

// decode runs dec into v, announced, and returns InvalidArgument naming
// the problem if v did not decode.
func (c *decodeCodec) decode(dec func(any) error, v any) error {
	c.announced.Store(v, nil)
	err := dec(v)
	if p, _ := c.announced.LoadAndDelete(v); p != nil {
		return status.Error(codes.InvalidArgument, p.(string))
	}
	return err
}

// decodeProblem names the first string field of b that is not valid UTF-8
// ("shipping_address.name: must be valid UTF-8"), or says that b is not a
// valid message of md.
func decodeProblem(md protoreflect.MessageDescriptor, b []byte) string {
	if path, ok := invalidUTF8(md, b, 0); ok {
		return strings.Join(path, ".") + ": must be valid UTF-8"
	}
	return "request: not a valid " + string(md.FullName()) + " message"
}

// maxDecodeDepth bounds how deep invalidUTF8 looks: no GoodGo request nests
// nearly this deep, and a request that does is answered as not valid
// without further work.
const maxDecodeDepth = 32

// invalidUTF8 returns the path of field names, outermost first, to the first
// string field of b that is not valid UTF-8. The path is built only on the
// way back from a find, so the work is linear in the size of b.
func invalidUTF8(md protoreflect.MessageDescriptor, b []byte, depth int) ([]string, bool) {
	if depth >= maxDecodeDepth {
		return nil, false
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return nil, false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, false
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil {
			continue
		}
		switch {
		case fd.Kind() == protoreflect.StringKind:
			if !utf8.Valid(v) {
				return []string{string(fd.Name())}, true
			}
		case fd.Message() != nil: // messages and map entries
			if path, ok := invalidUTF8(fd.Message(), v, depth+1); ok {
				return append([]string{string(fd.Name())}, path...), true
			}
		}
	}
	return nil, false
}

// decodeRegistrar registers services on a grpc.Server with method handlers
// that report decoding failures as InvalidArgument.
type decodeRegistrar struct {
	server *grpc.Server
	codec  *decodeCodec
}

func (r decodeRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, m := range desc.Methods {
		handler := m.Handler
		d.Methods[i] = grpc.MethodDesc{
			MethodName: m.MethodName,
			Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
				return handler(srv, ctx, func(v any) error { return r.codec.decode(dec, v) }, in)
			},
		}
	}
	r.server.RegisterService(&d, impl)
}

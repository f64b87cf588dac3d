package broker

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFrames follows request frames however the stream is cut.
func TestFrames(t *testing.T) {
	t.Parallel()
	f := kmsg.NewRequestFormatter(kmsg.FormatterClientID("c"))
	var stream []byte // AppendRequest sizes all of dst: one frame each
	stream = append(stream, f.AppendRequest(nil, &kmsg.ApiVersionsRequest{Version: 3, ClientSoftwareName: "x", ClientSoftwareVersion: "1"}, 7)...)
	stream = append(stream, f.AppendRequest(nil, &kmsg.SASLHandshakeRequest{Version: 1, Mechanism: "SCRAM-SHA-512"}, 8)...)
	stream = append(stream, f.AppendRequest(nil, &kmsg.SASLAuthenticateRequest{Version: 2, SASLAuthBytes: []byte("n,,n=u,r=abc")}, 9)...)
	type head struct{ key, version int16 }
	want := map[int32]head{7: {18, 3}, 8: {17, 1}, 9: {36, 2}}

	for _, chunk := range []int{1, 3, 7, len(stream)} {
		got := map[int32]head{}
		fr := frames{header: 8, onHeader: func(h []byte) {
			got[int32(binary.BigEndian.Uint32(h[4:8]))] = head{int16(binary.BigEndian.Uint16(h[0:2])), int16(binary.BigEndian.Uint16(h[2:4]))}
		}}
		for b := stream; len(b) > 0; {
			n := min(chunk, len(b))
			fr.feed(b[:n])
			b = b[n:]
		}
		require.Equal(t, want, got, "chunks of %d bytes", chunk)
	}
}

// TestAuthFailed: the synthesized answer decodes, in every version, as
// SASL_AUTHENTICATION_FAILED for the request's correlation id.
func TestAuthFailed(t *testing.T) {
	t.Parallel()
	for v := int16(0); v <= 2; v++ {
		frame := authFailed(42, v)
		require.Equal(t, len(frame)-4, int(binary.BigEndian.Uint32(frame[:4])))
		require.Equal(t, int32(42), int32(binary.BigEndian.Uint32(frame[4:8])))
		body := frame[8:]
		resp := kmsg.NewPtrSASLAuthenticateResponse()
		resp.Version = v
		if resp.IsFlexible() {
			require.Equal(t, byte(0), body[0], "empty header tags")
			body = body[1:]
		}
		require.NoError(t, resp.ReadFrom(body), "version %d", v)
		require.Equal(t, int16(58), resp.ErrorCode)
		require.Equal(t, authFailedMessage, *resp.ErrorMessage)
	}
}

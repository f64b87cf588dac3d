package relay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBeatRoundTripsAndIgnoresForeignPayloads(t *testing.T) {
	t.Parallel()
	b := beat{ID: "r1", State: stateOK, Keys: []string{"k1", "k2"}, Need: map[int16]string{3: "k2"}, Freed: []int16{3, 17}}
	got, ok := decodeBeat(b.encode())
	require.True(t, ok)
	require.Equal(t, b, got)

	for _, payload := range []string{"", "3,17", "{}", `{"state":"ok"}`, "not json"} {
		_, ok := decodeBeat(payload)
		require.False(t, ok, "payload %q", payload)
	}
}

func TestPeerChangedOnlyWhenWorthATick(t *testing.T) {
	t.Parallel()
	base := beat{ID: "r1", State: stateOK, Keys: []string{"k1"}}
	p := peer{beat: base}
	tests := []struct {
		name string
		b    beat
		want bool
	}{
		{"the same beat again", base, false},
		{"another state", beat{ID: "r1", State: stateFailing, Keys: []string{"k1"}}, true},
		{"another key", beat{ID: "r1", State: stateOK, Keys: []string{"k1", "k2"}}, true},
		{"a lane needed", beat{ID: "r1", State: stateOK, Keys: []string{"k1"}, Need: map[int16]string{3: "k2"}}, true},
		{"lanes freed", beat{ID: "r1", State: stateOK, Keys: []string{"k1"}, Freed: []int16{4}}, true},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, p.changed(tc.b), tc.name)
	}
	require.True(t, peer{}.changed(base), "a replica not heard before")
}

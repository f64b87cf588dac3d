package relay

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// woken drains the workers' wake-up signals and reports which were woken.
func woken(d *database) []bool {
	out := make([]bool, len(d.workers))
	for i, w := range d.workers {
		select {
		case <-w.wakeCh:
			out[i] = true
		default:
		}
	}
	return out
}

func TestWakeLanesWakesOnlyTheOwningWorkers(t *testing.T) {
	t.Parallel()
	d := &database{}
	for i := range 4 {
		d.workers = append(d.workers, &worker{index: i, wakeCh: make(chan struct{}, 1)})
	}
	tests := []struct {
		payload string
		want    []bool
	}{
		{"5", []bool{false, true, false, false}},     // lane l belongs to worker l mod 4
		{"3,7,8", []bool{true, false, false, true}},  // 3 and 7 share worker 3
		{"31", []bool{false, false, false, true}},    // the highest lane
		{"", []bool{true, true, true, true}},         // a writer that names no lanes
		{"2,x", []bool{true, true, true, true}},      // not a lane list: everyone looks
		{"-1", []bool{true, true, true, true}},       // nor is a negative number
		{"1,1,1", []bool{false, true, false, false}}, // signals coalesce
	}
	for _, tc := range tests {
		d.wakeLanes(tc.payload)
		require.Equal(t, tc.want, woken(d), "payload %q", tc.payload)
	}
}

//go:build failpoints

package failpoint_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/failpoint"
)

// TestHitKillsOnTheArmedPass runs this test binary again as a child that
// passes a point five times, printing before each pass, and checks that the
// child died of SIGKILL right at the armed pass.
func TestHitKillsOnTheArmedPass(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") != "" {
		for i := 1; i <= 5; i++ {
			failpoint.Hit("other.point")
			os.Stdout.WriteString("pass " + string(rune('0'+i)) + "\n")
			failpoint.Hit("test.point")
		}
		os.Stdout.WriteString("survived\n")
		return
	}
	for _, tc := range []struct {
		arm    string
		killed bool
		out    string
	}{
		{"test.point=3", true, "pass 1\npass 2\npass 3\n"},
		{"test.point=1", true, "pass 1\n"},
		{"test.point=6", false, "pass 1\npass 2\npass 3\npass 4\npass 5\nsurvived\n"},
		{"", false, "pass 1\npass 2\npass 3\npass 4\npass 5\nsurvived\n"},
	} {
		t.Run(tc.arm, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestHitKillsOnTheArmedPass$")
			cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", failpoint.Env+"="+tc.arm)
			out, err := cmd.Output()
			// The test framework prints PASS after the child's own lines.
			got, _, _ := strings.Cut(string(out), "PASS")
			require.Equal(t, tc.out, got)
			if !tc.killed {
				require.NoError(t, err)
				return
			}
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit)
			ws, ok := exit.Sys().(syscall.WaitStatus)
			require.True(t, ok)
			require.True(t, ws.Signaled(), "killed by a signal: %v", err)
			require.Equal(t, syscall.SIGKILL, ws.Signal())
		})
	}
}

func TestParse(t *testing.T) {
	got, err := failpoint.Parse(" a.b=1, c.d=12 ,")
	require.NoError(t, err)
	require.Equal(t, map[string]int64{"a.b": 1, "c.d": 12}, got)
	for _, bad := range []string{"a.b", "a.b=0", "a.b=x", "=3", "a.b=p0.2"} {
		_, err := failpoint.Parse(bad)
		require.Error(t, err, bad)
	}
}

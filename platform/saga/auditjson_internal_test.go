package saga

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// The hand-written audit encoding writes what json.Marshal writes, and
// falls back to it for what it does not handle.
func TestAuditJSONIsJSONMarshal(t *testing.T) {
	for _, d := range []map[string]any{
		{"step": "charge", "phase": PhaseAction, "attempt": 3, "error": "rpc error: code = Unavailable", "timeout": true},
		{"correlation_id": "01a23883-d5a7-7018-91b8-6872aecd8d65", "owner": "host-42"},
		{"retry_in_ms": int64(1500), "n": int32(-7), "permanent": false},
		{"error": `quoted "text" and \ backslash`, "step": "a"},
		{"error": "line\nbreak <html> & ünïcode", "step": "a"},
		{"nested": map[string]any{"x": 1}, "float": 1.5},
		{"k\"ey": "v"},
	} {
		want, err := json.Marshal(d)
		require.NoError(t, err)
		got, err := auditJSON(d)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got))
	}
	for _, d := range []map[string]any{nil, {}} {
		got, err := auditJSON(d)
		require.NoError(t, err)
		require.Equal(t, "{}", string(got))
	}
}

package configtable_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config/configtable"
)

const readme = "# X\n\n## Configuration\n\n| variable | default | used by |\n|---|---|---|\n" +
	"| `GRPC_ADDR` (`/x` explained) | `:1` | all |\n" +
	"| `PAYMENT_ADDR`, `ORDER_ADDR` | `:2` | orchestrator |\n" +
	"| `KAFKA_BROKERS` | `:3` | outbox-relay, order (projector) |\n" +
	"| `OTEL_EXPORTER_OTLP_ENDPOINT` and the other standard `OTEL_*` | unset | all |\n" +
	"| `GOGC`, `GOMEMLIMIT` | read by the Go runtime | all |\n" +
	"\n## Next\n\n| `NOT_CONFIG` | x | all |\n"

func TestCompare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(path, []byte(readme), 0o600))
	rows, err := configtable.Parse(path)
	require.NoError(t, err)
	require.Len(t, rows, 5, "only the Configuration section's rows")
	require.Equal(t, []string{"orchestrator"}, rows[1].Binaries)
	require.Equal(t, []string{"order", "outbox-relay"}, rows[2].Binaries)
	require.Equal(t, []string{"OTEL_"}, rows[3].Prefixes)

	load := func(names ...string) func(func(string) (string, bool)) {
		return func(lookup func(string) (string, bool)) {
			for _, n := range names {
				lookup(n)
			}
		}
	}
	unlisted, unread := configtable.Compare(rows, "order", configtable.Read(load("GRPC_ADDR", "KAFKA_BROKERS", "OTEL_SDK_DISABLED", "KUBERNETES_SERVICE_HOST")))
	require.Empty(t, unlisted)
	require.Empty(t, unread)

	t.Run("a variable added to the code but not to the table fails", func(t *testing.T) {
		unlisted, _ := configtable.Compare(rows, "order", configtable.Read(load("GRPC_ADDR", "KAFKA_BROKERS", "NEW_SETTING")))
		require.Equal(t, []string{"NEW_SETTING"}, unlisted)
	})
	t.Run("a variable listed for another binary only fails", func(t *testing.T) {
		unlisted, _ := configtable.Compare(rows, "payment", configtable.Read(load("GRPC_ADDR", "KAFKA_BROKERS")))
		require.Equal(t, []string{"KAFKA_BROKERS"}, unlisted)
	})
	t.Run("a variable listed but never read fails", func(t *testing.T) {
		_, unread := configtable.Compare(rows, "orchestrator", configtable.Read(load("GRPC_ADDR", "ORDER_ADDR")))
		require.Equal(t, []string{"PAYMENT_ADDR"}, unread, "the runtime's GOGC and GOMEMLIMIT are not counted")
	})
}

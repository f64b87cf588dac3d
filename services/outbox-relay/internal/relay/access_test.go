package relay_test

import (
	"encoding/json"
	"maps"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/servicetest"
)

// The relay says, per database, which role it connects as and what that
// role may do with the outbox, and warns when the role holds more than the
// relay needs. A role with exactly the relay's grants (pgtest.Owner
// standing in for goodgo_relay, whose real grants db/roles_test.go proves)
// relays as usual; the access shows in outbox_relay_rows_total.
func TestRelayReportsItsAccessPerDatabase(t *testing.T) {
	t.Parallel()
	pgtest.EnsureOwner(t)
	grants := maps.Clone(outboxMigrations(t))
	grants["000003_relay.up.sql"] = &fstest.MapFile{Data: []byte(
		"GRANT SELECT, UPDATE, DELETE ON outbox TO " + pgtest.Owner + ";\n" +
			"GRANT SELECT, INSERT, UPDATE ON outbox_lanes TO " + pgtest.Owner + ";")}
	grants["000003_relay.down.sql"] = &fstest.MapFile{Data: []byte("SELECT 1;")}
	restricted, pool := pgtest.NewDatabase(t, grants)
	superuser, _ := newOutboxDB(t)
	b := startBroker(t, broker.Config{})

	var logs servicetest.Logs
	rr := startRelay(t, relayOpts{urls: []string{pgtest.AsRole(restricted, pgtest.Owner), superuser}, brokers: []string{b.Addr()}, logs: &logs})

	w, err := outbox.NewWriter(nil, nil)
	require.NoError(t, err)
	writeEvents(t, pool, w, []string{"order-a", "order-b"}, 1, 3)
	u, err := url.Parse(restricted)
	require.NoError(t, err)
	restrictedDB := strings.TrimPrefix(u.Path, "/")
	requireMetric(t, rr.reg, 6, "outbox_relay_rows_total", map[string]string{"database": restrictedDB, "operation": "published"})
	require.GreaterOrEqual(t, metricValue(t, rr.reg, "outbox_relay_rows_total", map[string]string{"database": restrictedDB, "operation": "read"}), 6.0)
	require.Eventually(t, func() bool { return countRows(t, pool, "published_at IS NULL") == 0 }, 5*time.Second, 20*time.Millisecond)

	type line struct {
		Level, Msg, Role, Database string
		Superuser                  bool
		Outbox                     []string
		Excess                     []string
	}
	var access, warnings []line
	require.Eventually(t, func() bool {
		access, warnings = nil, nil
		for _, raw := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			var l line
			if json.Unmarshal([]byte(raw), &l) != nil {
				continue
			}
			switch {
			case l.Msg == "outbox access":
				access = append(access, l)
			case strings.HasPrefix(l.Msg, "the relay's role holds more than it needs"):
				warnings = append(warnings, l)
			}
		}
		return len(access) == 2 && len(warnings) == 1
	}, 10*time.Second, 20*time.Millisecond, "once per database; logs:\n%s", &logs)

	byRole := map[string]line{}
	for _, l := range access {
		byRole[l.Role] = l
	}
	require.Equal(t, []string{"SELECT", "UPDATE", "DELETE"}, byRole[pgtest.Owner].Outbox)
	require.False(t, byRole[pgtest.Owner].Superuser)
	require.True(t, byRole["postgres"].Superuser)
	require.Equal(t, "postgres", warnings[0].Role)
	require.Equal(t, []string{"superuser"}, warnings[0].Excess)
	require.Contains(t, warnings[0].Msg, "connect as goodgo_relay")
}

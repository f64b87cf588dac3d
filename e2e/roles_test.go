package e2e

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
)

// roleRelay is the outbox relay's database role.
const roleRelay = "goodgo_relay"

// CheckRoles checks that the binaries run as README "Database roles" says:
// each service connects as its own role, which is neither a superuser nor
// an owner and may only append to its outbox; the relay connects to each
// outbox database as goodgo_relay, holding exactly what it needs there; the
// databases belong to the owner that migrated them, not to a superuser.
func (e *Env) CheckRoles(t *testing.T) {
	for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator} {
		checked := e.Proc(svc).logsWith("database role checked")
		want := 1
		if svc == svcOrder {
			want = 2 // its own database and the read model's (CQRS)
		}
		require.Len(t, checked, want, "%s checks its role once per database", svc)
		for _, line := range checked {
			require.Equal(t, "goodgo_"+svc, line["role"], svc)
		}

		var owner string
		require.NoError(t, e.DB[svc].QueryRow(context.Background(),
			"SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()").Scan(&owner))
		require.Equal(t, pgtest.Owner, owner, "owner of the %s database", svc)
	}

	relay := e.Proc(svcRelay)
	// Logged as each database is first served: soon after readiness.
	require.Eventually(t, func() bool { return len(relay.logsWith("outbox access")) >= 3 }, readyTimeout, 20*time.Millisecond)
	var databases []string
	for _, line := range relay.logsWith("outbox access") {
		require.Equal(t, roleRelay, line["role"])
		require.Equal(t, false, line["superuser"])
		require.Equal(t, []any{"SELECT", "UPDATE", "DELETE"}, line["outbox"])
		require.Equal(t, []any{"SELECT", "INSERT", "UPDATE"}, line["outbox_lanes"])
		databases = append(databases, line["database"].(string))
	}
	require.Len(t, databases, 3, "one access line per outbox database")
	require.Empty(t, relay.logsWith("the relay's role holds more than it needs in this database: connect as goodgo_relay (README \"Database roles\")"))
	slices.Sort(databases)
	require.Len(t, slices.Compact(databases), 3)
}

// logsWith returns the JSON log lines whose msg is msg.
func (p *Process) logsWith(msg string) []map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []map[string]any
	for _, m := range p.logLines {
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

package outbox_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/postgres"
)

func TestAccessJudgesWritersAndTheRelay(t *testing.T) {
	t.Parallel()
	all := []string{postgres.Select, postgres.Insert, postgres.Update, postgres.Delete, postgres.Truncate, postgres.References, postgres.Trigger}
	writer := postgres.Privileges{Role: "goodgo_order", Tables: map[string][]string{
		"orders": {postgres.Select, postgres.Insert, postgres.Update}, "outbox": {postgres.Insert}, "outbox_lanes": nil,
	}}
	relay := postgres.Privileges{Role: "goodgo_relay", Tables: map[string][]string{
		"orders": nil, "outbox": {postgres.Select, postgres.Update, postgres.Delete},
		"outbox_lanes": {postgres.Select, postgres.Insert, postgres.Update},
	}}
	superuser := postgres.Privileges{Role: "postgres", Superuser: true, Tables: map[string][]string{"orders": all, "outbox": all, "outbox_lanes": all}}
	owner := postgres.Privileges{Role: "goodgo_owner", Owned: []string{"orders", "outbox", "outbox_lanes"},
		Tables: map[string][]string{"orders": all, "outbox": all, "outbox_lanes": all}}
	reader := postgres.Privileges{Role: "goodgo_order", Tables: map[string][]string{
		"orders": {postgres.Select}, "outbox": {postgres.Select, postgres.Insert}, "outbox_lanes": {postgres.Update},
	}}

	for _, tc := range []struct {
		name          string
		p             postgres.Privileges
		writer, relay []string
	}{
		{"the service's role", writer, nil, []string{"SELECT on orders", "INSERT on orders", "UPDATE on orders", "INSERT on outbox"}},
		{"the relay's role", relay, []string{"SELECT on outbox", "UPDATE on outbox", "DELETE on outbox", "SELECT on outbox_lanes", "INSERT on outbox_lanes", "UPDATE on outbox_lanes"}, nil},
		{"a superuser", superuser, []string{"superuser"}, []string{"superuser"}},
		{"the owner", owner, []string{"owner of orders", "owner of outbox", "owner of outbox_lanes"}, []string{"owner of orders", "owner of outbox", "owner of outbox_lanes"}},
		{"a writer that may read the outbox", reader, []string{"SELECT on outbox", "UPDATE on outbox_lanes"}, []string{"SELECT on orders", "INSERT on outbox"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.writer, outbox.WriterExcess(tc.p), "WriterExcess")
			require.Equal(t, tc.relay, outbox.RelayExcess(tc.p), "RelayExcess")
		})
	}
}

package authz

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/caller"
)

var (
	anonymous  = caller.Identity{}
	alice      = caller.Identity{User: "alice"}
	operator   = caller.Identity{User: "olga", Roles: []string{caller.RoleOperator}}
	admin      = caller.Identity{User: "adam", Roles: []string{caller.RoleAdmin}}
	orch       = caller.Identity{Service: "orchestrator"}
	inventory  = caller.Identity{Service: "inventory"}
	orchForAl  = caller.Identity{Service: "orchestrator", User: "alice", Delegated: true, Permissions: []string{"orders.place"}}
	orchNoPerm = caller.Identity{Service: "orchestrator", User: "alice", Delegated: true, Permissions: []string{"orders.read"}}
	// A delegated identity whose (impossible) roles must not count.
	orchForAdmin = caller.Identity{Service: "orchestrator", User: "adam", Delegated: true, Roles: []string{caller.RoleAdmin}}
	// A service presenting its certificate and a user's own bearer token.
	orchWithToken = caller.Identity{Service: "orchestrator", User: "alice"}
)

func TestDecide(t *testing.T) {
	users := Policy{Users: true}
	operators := Policy{Roles: []string{caller.RoleOperator}}
	admins := Policy{Roles: []string{caller.RoleAdmin}}
	services := Policy{Services: []string{"orchestrator", "order"}}
	delegated := Policy{Services: []string{"orchestrator"}, OnBehalfOf: "orders.place"}
	mixed := Policy{Users: true, Services: []string{"orchestrator"}, OnBehalfOf: "orders.place"}
	nobody := Policy{}

	tests := []struct {
		name string
		p    Policy
		id   caller.Identity
		want string // "" allowed, else a substring of the reason
	}{
		{"public allows anonymous", Policy{Public: true}, anonymous, ""},
		{"public allows a service", Policy{Public: true}, orch, ""},

		{"users: a user", users, alice, ""},
		{"users: an operator", users, operator, ""},
		{"users: anonymous", users, anonymous, "allowed only for signed-in users"},
		{"users: a service", users, orch, "allowed only for signed-in users"},
		{"users: a delegated user is not an end user", users, orchForAl, "allowed only for signed-in users"},
		{"users: a service with a user's token", users, orchWithToken, ""},

		{"operators: operator", operators, operator, ""},
		{"operators: admin implies operator", operators, admin, ""},
		{"operators: plain user", operators, alice, "allowed only for users with the operator role"},
		{"operators: delegated admin has no roles", operators, orchForAdmin, "allowed only for users with the operator role"},
		{"admins: admin", admins, admin, ""},
		{"admins: operator is not admin", admins, operator, "allowed only for users with the admin role"},
		{"admins: delegated admin", admins, orchForAdmin, "allowed only for users with the admin role"},

		{"services: listed service", services, orch, ""},
		{"services: listed service acting for a user", services, orchForAl, ""},
		{"services: another service", services, inventory, "allowed only for the orchestrator or order service"},
		{"services: a user", services, alice, "allowed only for the orchestrator or order service"},
		{"services: an admin", services, admin, "allowed only for the orchestrator or order service"},

		{"delegated: with the permission", delegated, orchForAl, ""},
		{"delegated: without an assertion", delegated, orch, "the orchestrator service must act for a user here (on-behalf-of assertion)"},
		{"delegated: with a user's own token", delegated, orchWithToken, "must act for a user here"},
		{"delegated: assertion lacks the permission", delegated, orchNoPerm, "the on-behalf-of assertion does not grant orders.place"},
		{"delegated: another service", delegated, caller.Identity{Service: "inventory", User: "alice", Delegated: true, Permissions: []string{"orders.place"}}, "allowed only for the orchestrator service acting for a user"},
		{"delegated: the user themself", delegated, alice, "allowed only for the orchestrator service acting for a user"},

		{"mixed: a user", mixed, alice, ""},
		{"mixed: the service for a user", mixed, orchForAl, ""},
		{"mixed: the service alone", mixed, orch, "must act for a user here"},

		{"nobody: anonymous", nobody, anonymous, "allowed only for nobody"},
		{"nobody: admin", nobody, admin, "allowed only for nobody"},
		{"nobody: service", nobody, orch, "allowed only for nobody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.p.decide(tt.id)
			if tt.want == "" {
				require.Empty(t, got)
				return
			}
			require.NotEmpty(t, got)
			require.Contains(t, got, tt.want)
		})
	}
}

func TestWho(t *testing.T) {
	tests := []struct {
		p    Policy
		want string
	}{
		{Policy{}, "nobody"},
		{Policy{Users: true}, "signed-in users"},
		{Policy{Roles: []string{"operator", "admin"}}, "users with the operator or admin role"},
		{Policy{Services: []string{"orchestrator"}}, "the orchestrator service"},
		{Policy{Services: []string{"orchestrator"}, OnBehalfOf: "x"}, "the orchestrator service acting for a user"},
		{
			Policy{Users: true, Roles: []string{"admin"}, Services: []string{"a", "b"}},
			"signed-in users and users with the admin role and the a or b service",
		},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.p.who())
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		want string // "" valid
	}{
		{"public", Policy{Public: true}, ""},
		{"users with owner field", Policy{Users: true, OwnerField: "customer_id"}, ""},
		{"roles", Policy{Roles: []string{caller.RoleOperator, caller.RoleAdmin}}, ""},
		{"services on behalf of", Policy{Services: []string{"orchestrator"}, OnBehalfOf: "orders.place"}, ""},
		{"nobody", Policy{}, ""},
		{"on behalf of without services", Policy{Users: true, OnBehalfOf: "orders.place"}, "OnBehalfOf without Services"},
		{"owner field without users", Policy{Roles: []string{"admin"}, OwnerField: "customer_id"}, "OwnerField applies to Users"},
		{"public and users", Policy{Public: true, Users: true}, "a Public policy grants nothing more"},
		{"public and roles", Policy{Public: true, Roles: []string{"admin"}}, "a Public policy grants nothing more"},
		{"public and services", Policy{Public: true, Services: []string{"x"}}, "a Public policy grants nothing more"},
		{"unknown role", Policy{Roles: []string{"superuser"}}, `unknown role "superuser"`},
		{"role in the wrong case", Policy{Roles: []string{"Admin"}}, `unknown role "Admin"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.validate("/svc/M")
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, "/svc/M", "the error names the method")
		})
	}
}

// firstInWindow logs a caller and reason once per window, again after it.
func TestFirstInWindow(t *testing.T) {
	a, err := New(nil, Config{}, prometheus.NewRegistry(), nil)
	require.NoError(t, err)
	now := time.Unix(1_000_000, 0)
	a.now = func() time.Time { return now }

	require.True(t, a.firstInWindow("alice|bad_token"))
	require.False(t, a.firstInWindow("alice|bad_token"))
	require.True(t, a.firstInWindow("alice|not_allowed"), "another reason")
	require.True(t, a.firstInWindow("bob|bad_token"), "another caller")

	now = now.Add(logWindow - time.Nanosecond)
	require.False(t, a.firstInWindow("alice|bad_token"), "still in the window")
	now = now.Add(time.Nanosecond)
	require.True(t, a.firstInWindow("alice|bad_token"), "the window is over")
	require.False(t, a.firstInWindow("alice|bad_token"))

	// Many distinct callers: the memory stays bounded by starting over.
	for i := range 10_000 {
		a.firstInWindow(fmt.Sprintf("caller-%d|bad_token", i))
	}
	require.LessOrEqual(t, len(a.logged), 10_000)
	require.True(t, a.firstInWindow("alice|bad_token"), "forgotten when the table was cleared")
}

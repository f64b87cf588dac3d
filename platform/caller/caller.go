// Package caller carries the verified identity of a request's caller
// through its context. Only the authorization interceptor (platform/authz)
// puts an Identity there, after verifying it from credentials: the peer's
// mutual-TLS certificate, a bearer token, an on-behalf-of assertion. Nothing
// a caller can simply type (a plain header) ever becomes an identity.
package caller

import (
	"context"
	"slices"
)

// Roles that tokens may grant to end users. An admin may do everything an
// operator may.
const (
	RoleOperator = "operator"
	RoleAdmin    = "admin"
)

// Identity is who is calling, as verified by the transport.
type Identity struct {
	// Service is the calling service's name ("orchestrator"), taken from
	// the SPIFFE ID of its verified client certificate; empty for a caller
	// without a certificate (an end user's client).
	Service string
	// User is the end user: the subject of a verified bearer token or, for
	// a service acting for a user (Delegated), the user named by its
	// verified on-behalf-of assertion. Empty when no user is involved.
	User string
	// Roles are the user's roles from the bearer token (RoleOperator,
	// RoleAdmin). A delegated user has none: a service never acts with a
	// user's administrative rights.
	Roles []string
	// Delegated reports that User comes from Service's on-behalf-of
	// assertion, not from the user's own token.
	Delegated bool
	// Permissions are what the on-behalf-of assertion grants the service
	// to do for User (for example "orders.place"); only when Delegated.
	Permissions []string
}

// IsZero reports an anonymous caller: no certificate, no token.
func (id Identity) IsZero() bool {
	return id.Service == "" && id.User == ""
}

// HasRole reports whether the caller's own token grants role. RoleAdmin
// implies RoleOperator.
func (id Identity) HasRole(role string) bool {
	if id.Delegated {
		return false
	}
	return slices.Contains(id.Roles, role) || (role == RoleOperator && slices.Contains(id.Roles, RoleAdmin))
}

// IsOperator reports whether the caller is an operator or an admin.
func (id Identity) IsOperator() bool { return id.HasRole(RoleOperator) }

// EndUser is the user calling with their own token: User unless the call
// is a service's delegated one, else "".
func (id Identity) EndUser() string {
	if id.Delegated {
		return ""
	}
	return id.User
}

// Can reports whether a delegated call's assertion grants permission.
func (id Identity) Can(permission string) bool {
	return id.Delegated && slices.Contains(id.Permissions, permission)
}

// Scope is the stable string that scopes per-caller state (idempotency
// keys, rate limits): "user:<subject>" for an end user calling with their
// own token (also through a service that forwards it), so that two users'
// state never meets; "service:<name>" for a service, whether or not it acts
// for a user with an assertion, so that a saga step's key is the same from
// any replica; "" for an anonymous caller.
func (id Identity) Scope() string {
	switch {
	case id.EndUser() != "":
		return "user:" + id.User
	case id.Service != "":
		return "service:" + id.Service
	default:
		return ""
	}
}

// String names the caller for logs and audit rows: "orchestrator for
// alice", "orchestrator", "alice", or "anonymous".
func (id Identity) String() string {
	switch {
	case id.Service != "" && id.User != "":
		return id.Service + " for " + id.User
	case id.Service != "":
		return id.Service
	case id.User != "":
		return id.User
	default:
		return "anonymous"
	}
}

type identityKey struct{}

// With returns a context that carries id. Only authentication code calls it.
func With(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// From returns the identity carried by ctx; the zero Identity (anonymous)
// when there is none.
func From(ctx context.Context) Identity {
	id, _ := ctx.Value(identityKey{}).(Identity)
	return id
}

// Delegation is what a service's outgoing call on behalf of a user
// carries: the user and the permissions the service acts with. The gRPC
// client turns it into a signed on-behalf-of assertion.
type Delegation struct {
	User        string
	Permissions []string
}

type delegationKey struct{}

// WithDelegation returns a context whose outgoing gRPC calls act for d.User.
func WithDelegation(ctx context.Context, d Delegation) context.Context {
	return context.WithValue(ctx, delegationKey{}, d)
}

// DelegationFrom returns the delegation set by WithDelegation, if any.
func DelegationFrom(ctx context.Context) (Delegation, bool) {
	d, ok := ctx.Value(delegationKey{}).(Delegation)
	return d, ok && d.User != ""
}

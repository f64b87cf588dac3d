package authz

import (
	"fmt"
	"slices"
	"strings"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/ratelimit"
)

// Policy says who may call one RPC. A caller is allowed when any of the
// grants matches; a Policy that grants nothing allows nobody.
type Policy struct {
	// Public allows anyone, with or without credentials (health checks).
	Public bool
	// Users allows any end user with a valid bearer token. Whether the user
	// may touch the particular resource (their own order, say) is the
	// handler's check: it reads caller.From(ctx).
	Users bool
	// Roles allows end users whose token grants one of these roles
	// (caller.RoleOperator, caller.RoleAdmin; admin implies operator).
	Roles []string
	// Services allows peers whose verified certificate names one of these
	// services.
	Services []string
	// OnBehalfOf, when set, allows Services only when they act for a user
	// with an on-behalf-of assertion granting this permission.
	OnBehalfOf string
	// OwnerField names a string field of the request (such as
	// "customer_id") that an end user must set to their own user id,
	// whatever their roles: nobody acts as someone else by naming them. An
	// empty field is left to the handler's validation.
	OwnerField string
	// Limit is the rate-limit class the call counts against, per end user.
	Limit ratelimit.Class
}

// Policies maps full method names ("/goodgo.order.v1.OrderService/PlaceOrder")
// to their policies.
type Policies map[string]Policy

// decide returns "" when p allows id, else why not, for the caller.
func (p Policy) decide(id caller.Identity) string {
	if p.Public {
		return ""
	}
	if id.EndUser() != "" {
		if p.Users || slices.ContainsFunc(p.Roles, id.HasRole) {
			return ""
		}
	}
	if id.Service != "" && slices.Contains(p.Services, id.Service) {
		switch {
		case p.OnBehalfOf == "":
			return ""
		case !id.Delegated:
			return "the " + id.Service + " service must act for a user here (on-behalf-of assertion)"
		case !id.Can(p.OnBehalfOf):
			return "the on-behalf-of assertion does not grant " + p.OnBehalfOf
		default:
			return ""
		}
	}
	return "allowed only for " + p.who()
}

// who describes the allowed callers: "users with the admin role", "the
// orchestrator service acting for a user".
func (p Policy) who() string {
	var parts []string
	if p.Users {
		parts = append(parts, "signed-in users")
	}
	if len(p.Roles) > 0 {
		parts = append(parts, "users with the "+strings.Join(p.Roles, " or ")+" role")
	}
	if len(p.Services) > 0 {
		s := "the " + strings.Join(p.Services, " or ") + " service"
		if p.OnBehalfOf != "" {
			s += " acting for a user"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "nobody"
	}
	return strings.Join(parts, " and ")
}

// validate reports a policy that cannot be what its author meant.
func (p Policy) validate(method string) error {
	switch {
	case p.OnBehalfOf != "" && len(p.Services) == 0:
		return fmt.Errorf("authz: %s: OnBehalfOf without Services", method)
	case p.OwnerField != "" && !p.Users:
		return fmt.Errorf("authz: %s: OwnerField applies to Users", method)
	case p.Public && (p.Users || len(p.Roles) > 0 || len(p.Services) > 0):
		return fmt.Errorf("authz: %s: a Public policy grants nothing more", method)
	}
	for _, r := range p.Roles {
		if r != caller.RoleOperator && r != caller.RoleAdmin {
			return fmt.Errorf("authz: %s: unknown role %q", method, r)
		}
	}
	return nil
}

// builtin are the policies of what every GoodGo server registers besides
// its own API: health checks are public (probes carry no credentials);
// reflection, registered in development mode only, is public there.
var builtin = Policies{
	"/grpc.health.v1.Health/Check":                                   {Public: true},
	"/grpc.health.v1.Health/Watch":                                   {Public: true},
	"/grpc.health.v1.Health/List":                                    {Public: true},
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo":      {Public: true},
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": {Public: true},
}

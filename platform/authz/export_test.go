package authz

// Policy returns the policy of method, if declared: for the tests of what
// New kept from the policies it was given.
func (a *Authorizer) Policy(method string) (Policy, bool) {
	p, ok := a.policies[method]
	return p, ok
}

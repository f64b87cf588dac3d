// Package order is the order domain: the Order aggregate, its validation
// rules, its state transitions and the errors they produce. It imports only
// the standard library; transport and storage live in sibling packages.
package order

import "errors"

// Error kinds. Every error this package returns wraps one of them, so the
// transport can map kinds to status codes with errors.Is.
var (
	// ErrInvalid marks bad input: the request itself is wrong.
	ErrInvalid = errors.New("invalid argument")
	// ErrNotFound marks a reference to an order or SKU that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrFailedPrecondition marks a request that is well formed but not
	// allowed in the current state: an illegal status transition, or a
	// catalog that cannot price the order (mixed or unsupported currencies).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrPermissionDenied marks a caller that may not make the request at
	// all, whatever the order (only admin callers confirm or cancel).
	ErrPermissionDenied = errors.New("permission denied")
)

// Error is a domain error that names the offending field. Its message,
// "field: problem", is written for clients and carries no internal detail,
// so the transport may return it verbatim.
type Error struct {
	// Kind is ErrInvalid, ErrNotFound, ErrFailedPrecondition or
	// ErrPermissionDenied.
	Kind error
	// Field names the request field in its wire form, e.g. "items[2].quantity".
	Field string
	// Problem says what is wrong, e.g. "must be between 1 and 1000".
	Problem string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Problem
	}
	return e.Field + ": " + e.Problem
}

// Unwrap returns the error's kind.
func (e *Error) Unwrap() error { return e.Kind }

func invalid(field, problem string) error {
	return &Error{Kind: ErrInvalid, Field: field, Problem: problem}
}

func precondition(field, problem string) error {
	return &Error{Kind: ErrFailedPrecondition, Field: field, Problem: problem}
}

// NoSuchOrder is the error for an order that does not exist, or that the
// caller may not see: both get the same answer, so that a caller cannot
// learn whether someone else's order exists.
func NoSuchOrder() error {
	return &Error{Kind: ErrNotFound, Field: "order_id", Problem: "no such order"}
}

package payment

import (
	"errors"
	"fmt"
)

// Sentinel errors. Adapters wrap them with context; test with errors.Is.
var (
	// ErrInvalidArgument classifies bad client input. Errors that wrap it are
	// *FieldError values whose message names the offending field and is safe
	// to show to clients.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrNotFound reports an unknown payment (by payment id or order id).
	ErrNotFound = errors.New("payment not found")
	// ErrAmountMismatch reports a ProcessPayment for an order that already
	// has a payment of another amount or currency: the order's one payment
	// exists and cannot be replaced.
	ErrAmountMismatch = errors.New("order_id: already has a payment of a different amount")
)

// FieldError is bad input in one request field. Its message has the form
// "field: problem" and contains nothing but the field path and the rule, so
// the transport may pass it to the client verbatim.
type FieldError struct {
	// Field is the request field path, e.g. "amount.currency_code".
	Field string
	// Problem says what is wrong, e.g. "must be positive".
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Is makes errors.Is(err, ErrInvalidArgument) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalidArgument }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

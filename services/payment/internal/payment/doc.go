// Package payment is the payment domain: the Payment aggregate, its status
// transitions (CAPTURED → REFUNDED; DECLINED is final), the decline rules
// that let tests and demos produce failures on demand, input validation and
// the sentinel errors the transport maps to gRPC codes.
//
// It imports only the standard library; storage and transport adapt to it.
package payment

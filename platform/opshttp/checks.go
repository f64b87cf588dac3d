package opshttp

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// Check is one named readiness check, e.g. {"postgres", pool.Ping}.
type Check struct {
	// Name is what /readyz shows when the check fails: a dependency's
	// role ("postgres", "redis", "kafka", "payment"), never its address.
	Name string
	// Fn returns nil when the dependency is usable. It must honour ctx.
	Fn func(context.Context) error
	// Optional marks a dependency the binary keeps working without, only
	// degraded (a neighbour whose absence delays some work, a cache): its
	// failure is shown and logged, but the binary stays ready, so that
	// losing it does not take every replica out of rotation at once.
	Optional bool
}

// CheckError reports a failed check of [Checks]. Its Error text includes
// the underlying error (for logs); /readyz shows only Name and Reason.
type CheckError struct {
	Name string
	// Reason says in a few fixed words why the dependency is unusable
	// ("connection refused", "timeout", …; see [Reason]): safe to show on
	// an unauthenticated port, unlike Err.
	Reason string
	// Optional is the check's Optional.
	Optional bool
	Err      error
}

func (e *CheckError) Error() string { return fmt.Sprintf("%s: %v", e.Name, e.Err) }

func (e *CheckError) Unwrap() error { return e.Err }

// Checks combines checks into a readiness function for [New]: it runs them
// all at once (one hung dependency does not hide the others) and returns
// nil when all pass, else the *CheckError of each failed one, in the order
// given, joined ([errors.Join]; errors.As finds the first). The binary is
// not ready when a check that is not Optional failed. A check with a nil Fn
// passes.
func Checks(checks ...Check) func(context.Context) error {
	return func(ctx context.Context) error {
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			if c.Fn == nil {
				continue
			}
			wg.Go(func() {
				if err := c.Fn(ctx); err != nil {
					errs[i] = &CheckError{Name: c.Name, Reason: Reason(err), Optional: c.Optional, Err: err}
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// reasonError carries a reason chosen by the check itself.
type reasonError struct {
	reason string
	err    error
}

func (e *reasonError) Error() string { return e.err.Error() }
func (e *reasonError) Unwrap() error { return e.err }

// WithReason wraps err, a check's failure, with the reason /readyz shows
// for it: a few fixed words that name no host, user or database ("schema
// not migrated", "not serving"). Nil stays nil.
func WithReason(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &reasonError{reason: reason, err: err}
}

// GRPCHealth returns a readiness check of the service behind conn (a
// neighbour): it asks the service's gRPC health service and passes when
// the answer is SERVING, or when the service has no health service
// (Unimplemented: it answered). NOT_SERVING fails as "not serving".
func GRPCHealth(conn grpc.ClientConnInterface) func(context.Context) error {
	hc := healthpb.NewHealthClient(conn)
	return func(ctx context.Context) error {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		switch {
		case status.Code(err) == codes.Unimplemented:
			return nil
		case err != nil:
			return err
		case resp.GetStatus() != healthpb.HealthCheckResponse_SERVING:
			return WithReason("not serving", fmt.Errorf("health: %s", resp.GetStatus()))
		}
		return nil
	}
}

// Reason classifies a check's failure into a few fixed words, safe to show
// on an unauthenticated port: the reason given with [WithReason], else
// "timeout", "connection refused", "connection closed", "host not found",
// "unreachable", "tls handshake failed", "unavailable" (a gRPC service),
// or "failed" when nothing more is known. An error in err's tree with a
// method ReadinessReason() string gives its own (kafkaconn's missing
// topics), under a reason given with WithReason.
func Reason(err error) string {
	var r *reasonError
	if errors.As(err, &r) {
		return r.reason
	}
	var own interface{ ReadinessReason() string }
	if errors.As(err, &own) {
		return own.ReadinessReason()
	}
	if s, ok := status.FromError(err); ok {
		switch s.Code() {
		case codes.DeadlineExceeded:
			return "timeout"
		case codes.Unavailable:
			// The transport's error is only in the text.
			if reason := reasonInText(s.Message()); reason != "" {
				return reason
			}
			return "unavailable"
		}
		return "failed"
	}
	var (
		netErr  net.Error
		dnsErr  *net.DNSError
		certErr *tls.CertificateVerificationError
		alert   tls.AlertError
		header  tls.RecordHeaderError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &dnsErr):
		return "host not found"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &certErr), errors.As(err, &alert), errors.As(err, &header),
		errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return "tls handshake failed"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return "connection closed"
	}
	if reason := reasonInText(err.Error()); reason != "" {
		return reason
	}
	return "failed"
}

// reasonInText finds the reason in an error's text, for clients that
// flatten their errors into text; the words are the standard library's.
func reasonInText(msg string) string {
	for _, m := range []struct{ text, reason string }{
		{"connection refused", "connection refused"},
		{"i/o timeout", "timeout"},
		{"no such host", "host not found"},
		{"connection reset", "connection closed"},
		{"broken pipe", "connection closed"},
		{"EOF", "connection closed"},
	} {
		if strings.Contains(msg, m.text) {
			return m.reason
		}
	}
	return ""
}

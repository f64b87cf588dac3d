package e2e

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/grpc"
)

// spanSink is an OTLP/gRPC trace receiver in the test process: the
// binaries export to it as they would to Jaeger or a collector.
type spanSink struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans []sunkSpan
}

// sunkSpan is what the test needs of one exported span.
type sunkSpan struct {
	service, name, trace string
	attrs                map[string]string
}

func (s *spanSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := attrMap(rs.GetResource().GetAttributes())["service.name"]
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				s.spans = append(s.spans, sunkSpan{
					service: service, name: sp.GetName(), trace: hex.EncodeToString(sp.GetTraceId()),
					attrs: attrMap(sp.GetAttributes()),
				})
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func attrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[kv.GetKey()] = kv.GetValue().GetStringValue()
	}
	return m
}

// traces groups the spans received so far by trace id.
func (s *spanSink) traces() map[string][]sunkSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string][]sunkSpan{}
	for _, sp := range s.spans {
		out[sp.trace] = append(out[sp.trace], sp)
	}
	return out
}

// startSpanSink serves a spanSink on a loopback port until t ends.
func startSpanSink(t *testing.T) (*spanSink, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	sink := &spanSink{}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, sink)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return sink, ln.Addr().String()
}

// orderTraceGaps returns what one order's trace lacks: the PlaceOrder
// span, its outbox write (the InsertEvents query), its Redis idempotency
// check, the relay's publish, the orchestrator's saga steps and the step
// RPCs served by payment and inventory.
func orderTraceGaps(spans []sunkSpan) []string {
	has := func(service string, match func(sunkSpan) bool) bool {
		return slices.ContainsFunc(spans, func(s sunkSpan) bool { return s.service == service && match(s) })
	}
	named := func(suffix string) func(sunkSpan) bool {
		return func(s sunkSpan) bool { return strings.HasSuffix(s.name, suffix) }
	}
	prefixed := func(prefix string) func(sunkSpan) bool {
		return func(s sunkSpan) bool { return strings.HasPrefix(s.name, prefix) }
	}
	db := func(system string) func(sunkSpan) bool {
		return func(s sunkSpan) bool { return s.attrs["db.system"] == system || s.attrs["db.system.name"] == system }
	}
	var gaps []string
	for _, want := range []struct {
		what, service string
		match         func(sunkSpan) bool
	}{
		{"PlaceOrder span", svcOrder, named("OrderService/PlaceOrder")},
		{"outbox write (InsertEvents)", svcOrder, named("InsertEvents")},
		{"PostgreSQL span", svcOrder, db("postgresql")},
		{"Redis span (idempotency)", svcOrder, db("redis")},
		{"relay publish", svcRelay, named("outbox.publish")},
		{"saga step", svcOrchestrator, prefixed("saga.step.")},
		{"payment step RPC", svcPayment, prefixed("goodgo.payment.v1.PaymentService/")},
		{"inventory step RPC", svcInventory, prefixed("goodgo.inventory.v1.InventoryService/")},
		{"orchestrator database span", svcOrchestrator, db("postgresql")},
	} {
		if !has(want.service, want.match) {
			gaps = append(gaps, want.service+": "+want.what)
		}
	}
	return gaps
}

// TestOneTracePerOrder exports every binary's spans over OTLP to a
// receiver in the test and requires each order's whole life in one trace:
// PlaceOrder and its outbox write and database and Redis calls, the relay's
// publish, the saga's steps and the step RPCs they make — and no saga step
// in a trace of its own.
func TestOneTracePerOrder(t *testing.T) {
	start := time.Now()
	sink, addr := startSpanSink(t)
	e := NewEnv(t, envOptions{race: true, vars: map[string]map[string]string{"*": {
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + addr,
		"OTEL_EXPORTER_OTLP_INSECURE": "true",
		"OTEL_BSP_SCHEDULE_DELAY":     "100", // ms: export at once, not every 5 s
	}}})

	t.Logf("environment ready after %s", time.Since(start).Round(time.Millisecond))
	const orders = 3
	var ids []string
	for i := range orders {
		ids = append(ids, e.MustPlaceOrder(t, items(plentySKUs[i], 1), cardOK).GetOrderId())
	}
	for id, status := range e.WaitOrders(t, ids, time.Minute) {
		require.Equal(t, "CONFIRMED", status, id)
	}

	t.Logf("orders confirmed after %s", time.Since(start).Round(time.Millisecond))
	var report string
	ok := poll(time.Minute, 200*time.Millisecond, func() bool {
		var lines []string
		complete, sagaTraces := 0, 0
		for id, spans := range sink.traces() {
			place := slices.ContainsFunc(spans, func(s sunkSpan) bool { return strings.HasSuffix(s.name, "OrderService/PlaceOrder") })
			saga := slices.ContainsFunc(spans, func(s sunkSpan) bool { return strings.HasPrefix(s.name, "saga.step.") })
			if saga {
				sagaTraces++
			}
			if !place {
				continue
			}
			if gaps := orderTraceGaps(spans); len(gaps) > 0 {
				lines = append(lines, fmt.Sprintf("trace %s lacks %s", id, strings.Join(gaps, ", ")))
			} else {
				complete++
			}
		}
		sort.Strings(lines)
		report = fmt.Sprintf("%d complete order traces, %d traces with saga steps (want %d each)\n%s",
			complete, sagaTraces, orders, strings.Join(lines, "\n"))
		return complete == orders && sagaTraces == orders
	})
	require.True(t, ok, report)
	t.Logf("every order's trace complete after %s", time.Since(start).Round(time.Millisecond))

	// The spans of one order, for the reader of a -v run.
	for _, spans := range sink.traces() {
		if orderTraceGaps(spans) != nil {
			continue
		}
		var names []string
		for _, s := range spans {
			names = append(names, s.service+" "+s.name)
		}
		sort.Strings(names)
		t.Logf("one order's trace, %d spans:\n%s", len(spans), strings.Join(slices.Compact(names), "\n"))
		break
	}
}

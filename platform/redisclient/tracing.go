package redisclient

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/goodgo/goodgo/platform/internal/childspans"
)

// instrument makes a span per command, per pipeline and per dial of
// client's connections (of each node's, for a cluster), child of the
// caller's span in the global tracer provider (telemetry.Setup's).
func instrument(client redis.UniversalClient) {
	tracer := otel.GetTracerProvider().Tracer("github.com/goodgo/goodgo/platform/redisclient")
	switch c := client.(type) {
	case *redis.ClusterClient:
		c.OnNewNode(func(node *redis.Client) { node.AddHook(newTracing(tracer, node.Options().Addr)) })
	case *redis.Client:
		c.AddHook(newTracing(tracer, c.Options().Addr))
	}
}

// tracing is the go-redis hook behind instrument. Spans are made only
// inside a sampled trace (childspans.Wanted): a request's commands show in its trace, while
// the background loops (lease renewals) make no root trace per command,
// and no work is done for a span no one records. They name the commands
// ("set", "redis.pipeline get del") and the server, never keys or values (an
// idempotency record holds a stored reply) nor the calling function.
//
// It replaces redisotel's hook, which built every pipeline's span name and
// attributes before the tracer was asked whether anyone records them: 2-5 %
// of each service's CPU in the order saga, where nothing is sampled
// (docs/benchmarks.md).
type tracing struct {
	tracer trace.Tracer
	opts   []trace.SpanStartOption
}

func newTracing(tracer trace.Tracer, addr string) tracing {
	attrs := []attribute.KeyValue{semconv.DBSystemNameRedis}
	if host, port, err := net.SplitHostPort(addr); err == nil {
		attrs = append(attrs, semconv.ServerAddress(host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, semconv.ServerPort(p))
		}
	}
	return tracing{tracer: tracer, opts: []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...),
	}}
}

func (t tracing) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !childspans.Wanted(ctx) {
			return next(ctx, network, addr)
		}
		ctx, span := t.tracer.Start(ctx, "redis.dial", t.opts...)
		defer span.End()
		conn, err := next(ctx, network, addr)
		record(span, err)
		return conn, err
	}
}

func (t tracing) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !childspans.Wanted(ctx) {
			return next(ctx, cmd)
		}
		ctx, span := t.tracer.Start(ctx, cmd.FullName(), t.opts...)
		defer span.End()
		err := next(ctx, cmd)
		record(span, err)
		return err
	}
}

func (t tracing) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !childspans.Wanted(ctx) {
			return next(ctx, cmds)
		}
		ctx, span := t.tracer.Start(ctx, "redis.pipeline "+summary(cmds), t.opts...)
		defer span.End()
		span.SetAttributes(attribute.Int("db.redis.num_cmd", len(cmds)))
		err := next(ctx, cmds)
		record(span, err)
		return err
	}
}

// summary names a pipeline's distinct commands in order, at most ten.
func summary(cmds []redis.Cmder) string {
	const most = 10
	names := make([]string, 0, min(len(cmds), most))
	for _, c := range cmds {
		if len(names) == most {
			break
		}
		if name := c.FullName(); !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return strings.Join(names, " ")
}

// record marks span failed with err; redis.Nil (no such key) is an
// answer, not a failure.
func record(span trace.Span, err error) {
	if err == nil || errors.Is(err, redis.Nil) {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// Package parked implements opsv1.ParkedEventService in the outbox relay:
// operators list the outbox rows the relay parked (the broker refused them
// for good, they were too large, their payload did not open), replay them
// (the row is unparked and published again at once) or discard them (the
// row is deleted). Every replay and discard is audited: an "audit" log line
// with the operator's verified identity, and outbox_parked_actions_total.
// The relay's database role may read, mark and delete outbox rows and
// write nothing else, so the log line is the durable record of the action.
//
// Replaying an event publishes it after the events of its aggregate that
// were published while it was parked (the relay's policy: later events
// continue). Consumers that applied a later version of the aggregate
// record it as stale and do not apply it (platform/inbox); consumers of
// events they do not order by version apply it.
package parked

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/ratelimit"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
)

// Page sizes of ListParkedEvents, and the longest reason.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
	MaxReason       = 500
)

// ApplicationName is the application_name of the service's connections:
// not the relay's prefix, so they never count as a replica in the lane
// leases.
const ApplicationName = "outbox-relay-ops"

// Policies say who may call ParkedEventService: operators (and admins).
// The relay has no Redis: the rate-limit classes apply where a limiter is
// configured.
func Policies() authz.Policies {
	operators := []string{caller.RoleOperator}
	return authz.Policies{
		opsv1.ParkedEventService_ListParkedEvents_FullMethodName:   {Roles: operators, Limit: ratelimit.Read},
		opsv1.ParkedEventService_ReplayParkedEvent_FullMethodName:  {Roles: operators, Limit: ratelimit.Write},
		opsv1.ParkedEventService_DiscardParkedEvent_FullMethodName: {Roles: operators, Limit: ratelimit.Write},
	}
}

// Source is one outbox database.
type Source struct {
	// Name is the database's name ("goodgo_order"): ParkedEvent.source.
	Name string
	Pool *pgxpool.Pool
}

// Server implements ParkedEventService over the outbox databases.
type Server struct {
	opsv1.UnimplementedParkedEventServiceServer
	sources []Source
	logger  *slog.Logger
	actions *prometheus.CounterVec
}

var _ opsv1.ParkedEventServiceServer = (*Server)(nil)

// Open returns the server over the outbox databases at urls (the relay's
// OUTBOX_DATABASE_URLS), each with a small pool of its own that connects
// on first use: a database that is down fails only the calls that need
// it. Close releases the pools. Metrics go to reg (nil: none).
func Open(urls []string, reg prometheus.Registerer, logger *slog.Logger) (*Server, error) {
	logger = logs.OrDiscard(logger)
	s := &Server{logger: logger, actions: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outbox_parked_actions_total",
		Help: "Operators' actions on parked outbox events, by database, action (replay, discard) and outcome (ok, refused, failed).",
	}, []string{"database", "action", "outcome"})}
	if reg != nil {
		if err := reg.Register(s.actions); err != nil {
			return nil, fmt.Errorf("parked: register metrics: %w", err)
		}
	}
	seen := map[string]bool{}
	for _, u := range urls {
		cfg, err := pgxpool.ParseConfig(u)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("parked: %w", err)
		}
		name := cfg.ConnConfig.Database
		if seen[name] {
			s.Close()
			return nil, fmt.Errorf("parked: two outbox databases named %q", name)
		}
		seen[name] = true
		cfg.AfterConnect = postgres.AfterConnect
		cfg.MaxConns, cfg.MinConns = 2, 0
		cfg.ConnConfig.RuntimeParams["application_name"] = ApplicationName
		pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("parked: %s: %w", name, err)
		}
		s.sources = append(s.sources, Source{Name: name, Pool: pool})
	}
	return s, nil
}

// Close closes the pools.
func (s *Server) Close() {
	for _, src := range s.sources {
		src.Pool.Close()
	}
}

// ListParkedEvents implements ParkedEventService: the databases in
// configuration order, each in id order. The page token is opaque.
func (s *Server) ListParkedEvents(ctx context.Context, req *opsv1.ListParkedEventsRequest) (*opsv1.ListParkedEventsResponse, error) {
	size, err := grpcserver.PageSize(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	if err != nil {
		return nil, err
	}
	if req.GetAggregateId() != "" && req.GetAggregateType() == "" {
		return nil, status.Error(codes.InvalidArgument, "aggregate_id needs aggregate_type")
	}
	start, after := 0, int64(0)
	if tok := req.GetPageToken(); tok != "" {
		var err error
		if start, after, err = decodeToken(tok); err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token is not a token from a previous response")
		}
	}
	type listed struct {
		src int
		row outboxdb.ListParkedEventsRow
	}
	var page []listed
	for i := start; i < len(s.sources) && len(page) <= size; i++ {
		src := s.sources[i]
		if req.GetSource() != "" && req.GetSource() != src.Name {
			continue
		}
		from := int64(0)
		if i == start {
			from = after
		}
		rows, err := outboxdb.New(src.Pool).ListParkedEvents(ctx, outboxdb.ListParkedEventsParams{
			After: from, AggregateType: req.GetAggregateType(), AggregateID: req.GetAggregateId(),
			PageSize: int32(size + 1 - len(page)), // one more tells whether a next page exists
		})
		if err != nil {
			return nil, s.toStatus(ctx, src.Name, err)
		}
		for _, r := range rows {
			page = append(page, listed{i, r})
		}
	}
	resp := &opsv1.ListParkedEventsResponse{}
	if len(page) > size {
		page = page[:size]
		last := page[size-1]
		resp.NextPageToken = encodeToken(last.src, last.row.ID)
	}
	resp.Events = make([]*opsv1.ParkedEvent, len(page))
	for i, p := range page {
		r := p.row
		resp.Events[i] = &opsv1.ParkedEvent{
			EventId: r.EventID.String(), Source: s.sources[p.src].Name, EventType: r.EventType,
			AggregateType: r.AggregateType, AggregateId: r.AggregateID, AggregateVersion: r.AggregateVersion,
			Error: r.LastError, Attempts: r.Attempts, ParkedAt: timestamppb.New(r.ParkedAt),
			State: opsv1.ParkedEventState_PARKED_EVENT_STATE_PARKED, Topic: r.Topic,
		}
	}
	return resp, nil
}

// ReplayParkedEvent implements ParkedEventService: the row is unparked
// (attempts and error cleared) and its lane woken, so the relay owning the
// lane publishes it at once. A repeated call finds it no longer parked
// (FailedPrecondition).
func (s *Server) ReplayParkedEvent(ctx context.Context, req *opsv1.ReplayParkedEventRequest) (*opsv1.ReplayParkedEventResponse, error) {
	a, err := s.begin(ctx, "replay", req.GetEventId(), req.GetSource(), req.GetReason(), false)
	if err != nil {
		return nil, err
	}
	var row outboxdb.UnparkEventRow
	src, err := s.find(ctx, a, func(ctx context.Context, q *outboxdb.Queries) error {
		var err error
		if row, err = q.UnparkEvent(ctx, a.id); err != nil {
			return err
		}
		return q.WakeLane(ctx, strconv.Itoa(int(row.Lane)))
	})
	if err != nil {
		return nil, s.refuse(ctx, a, src, err)
	}
	s.audit(ctx, a, src, "ok", nil, "aggregate_type", row.AggregateType, "aggregate_id", row.AggregateID,
		"aggregate_version", row.AggregateVersion, "event_type", row.EventType)
	return &opsv1.ReplayParkedEventResponse{Results: []*opsv1.ReplayResult{{EventId: a.id.String(), Result: "requeued"}}}, nil
}

// DiscardParkedEvent implements ParkedEventService: the row is deleted,
// and the audit line (with the reason) is its record.
func (s *Server) DiscardParkedEvent(ctx context.Context, req *opsv1.DiscardParkedEventRequest) (*opsv1.DiscardParkedEventResponse, error) {
	a, err := s.begin(ctx, "discard", req.GetEventId(), req.GetSource(), req.GetReason(), true)
	if err != nil {
		return nil, err
	}
	var row outboxdb.DeleteParkedEventRow
	src, err := s.find(ctx, a, func(ctx context.Context, q *outboxdb.Queries) error {
		var err error
		row, err = q.DeleteParkedEvent(ctx, a.id)
		return err
	})
	if err != nil {
		return nil, s.refuse(ctx, a, src, err)
	}
	s.audit(ctx, a, src, "ok", nil, "aggregate_type", row.AggregateType, "aggregate_id", row.AggregateID,
		"aggregate_version", row.AggregateVersion, "event_type", row.EventType, "last_error", row.LastError)
	return &opsv1.DiscardParkedEventResponse{Event: &opsv1.ParkedEvent{
		EventId: row.EventID.String(), Source: src, EventType: row.EventType,
		AggregateType: row.AggregateType, AggregateId: row.AggregateID, AggregateVersion: row.AggregateVersion,
		Error: row.LastError, Attempts: row.Attempts, ParkedAt: timestamppb.New(row.ParkedAt),
		State: opsv1.ParkedEventState_PARKED_EVENT_STATE_DISCARDED, ResolvedAt: timestamppb.Now(),
		ResolvedBy: a.actor, ResolutionReason: a.reason, Topic: row.Topic,
	}}, nil
}

// action is one operator's replay or discard being served.
type action struct {
	name, actor, reason, source, key string
	id                               uuid.UUID
}

// errNotParked and errNotFound are find's verdicts.
var (
	errNotParked = errors.New("the event is not parked")
	errNotFound  = errors.New("parked event not found")
)

// begin validates a replay or discard request. The relay keeps no
// idempotency records (it has no Redis, and its role writes nothing but
// outbox marks): the key is required like on every mutating RPC and
// logged with the action; repeats are harmless because both actions apply
// only to a parked row.
func (s *Server) begin(ctx context.Context, name, eventID, source, reason string, needReason bool) (action, error) {
	a := action{name: name, actor: caller.From(ctx).String(), reason: reason, source: source}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(idempotency.MetadataKey); len(v) > 0 {
			a.key = v[0]
		}
	}
	var err error
	switch {
	case a.key == "":
		return a, status.Errorf(codes.InvalidArgument, "%s metadata is required", idempotency.MetadataKey)
	case needReason && reason == "":
		return a, status.Error(codes.InvalidArgument, "reason is required")
	case len(reason) > MaxReason:
		return a, status.Errorf(codes.InvalidArgument, "reason must be at most %d bytes", MaxReason)
	}
	if a.id, err = uuid.Parse(eventID); err != nil {
		return a, status.Error(codes.InvalidArgument, "event_id must be a UUID")
	}
	return a, nil
}

// find runs do in a transaction in each database a names (all when none)
// until one has the parked event; pgx.ErrNoRows from do means "not parked
// here". It returns the database's name.
func (s *Server) find(ctx context.Context, a action, do func(context.Context, *outboxdb.Queries) error) (string, error) {
	for _, src := range s.sources {
		if a.source != "" && a.source != src.Name {
			continue
		}
		err := postgres.InTx(ctx, src.Pool, func(tx pgx.Tx) error { return do(ctx, outboxdb.New(tx)) })
		if err == nil {
			return src.Name, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return src.Name, err
		}
		found, err := outboxdb.New(src.Pool).OutboxEventExists(ctx, a.id)
		if err != nil {
			return src.Name, err
		}
		if found {
			return src.Name, errNotParked
		}
	}
	return a.source, errNotFound
}

// refuse audits a refused or failed action and returns its status.
func (s *Server) refuse(ctx context.Context, a action, src string, err error) error {
	st := s.toStatus(ctx, src, err)
	outcome := "refused"
	if c := status.Code(st); c == codes.Internal || c == codes.Unavailable {
		outcome = "failed"
	}
	s.audit(ctx, a, src, outcome, err)
	return st
}

func (s *Server) audit(ctx context.Context, a action, src, outcome string, err error, extra ...any) {
	s.actions.WithLabelValues(src, a.name, outcome).Inc()
	attrs := append([]any{
		"actor", a.actor, "action", "outbox." + a.name, "event_id", a.id.String(), "database", src,
		"reason", a.reason, "outcome", outcome, "idempotency_key", a.key,
	}, extra...)
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	s.logger.InfoContext(ctx, "audit", attrs...)
}

func (s *Server) toStatus(ctx context.Context, src string, err error) error {
	switch {
	case errors.Is(err, errNotFound):
		return status.Error(codes.NotFound, "parked event not found")
	case errors.Is(err, errNotParked):
		return status.Error(codes.FailedPrecondition, "event_id: the event is not parked (published or being published)")
	case postgres.IsTransient(err):
		s.logger.WarnContext(ctx, "parked events request failed; transient", "database", src, "error", err)
		return status.Errorf(codes.Unavailable, "outbox database %s temporarily unavailable; retry", src)
	default:
		return grpcerr.Fallback(ctx, s.logger, "parked events request", err, "database", src)
	}
}

// Page tokens: base64url of version(1) | database index(2) | last id(8).
const tokenVersion = 1

func encodeToken(src int, after int64) string {
	b := append(make([]byte, 0, 11), tokenVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(src))
	b = binary.BigEndian.AppendUint64(b, uint64(after))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(tok string) (int, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 11 || b[0] != tokenVersion {
		return 0, 0, errors.New("bad page token")
	}
	return int(binary.BigEndian.Uint16(b[1:3])), int64(binary.BigEndian.Uint64(b[3:])), nil
}

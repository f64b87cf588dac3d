package grpcapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"log/slog"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/inbox"
	"github.com/goodgo/goodgo/platform/logs"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
)

// ParkedEvents is what ParkedEventService needs of the inbox's admin
// (inbox.Admin).
type ParkedEvents interface {
	// Consumer names the consumer whose parked events these are.
	Consumer() string
	// List returns a page of parked events, oldest first.
	List(ctx context.Context, f inbox.ListFilter) ([]inbox.Parked, error)
	// Replay applies a parked event now, then those parked behind it.
	Replay(ctx context.Context, id uuid.UUID, actor, reason string) ([]inbox.ReplayResult, error)
	// Discard gives a parked event up, with a reason.
	Discard(ctx context.Context, id uuid.UUID, actor, reason string) (inbox.Parked, error)
}

var _ ParkedEvents = (*inbox.Admin)(nil)

// Page sizes of ListParkedEvents.
const (
	DefaultParkedPageSize = 50
	MaxParkedPageSize     = 500
)

// Parked implements opsv1.ParkedEventService over the orchestrator's inbox
// consumer: operators list, replay and discard its parked events. The
// operator's verified identity is the actor of every audit line and
// resolution (inbox.Admin).
type Parked struct {
	opsv1.UnimplementedParkedEventServiceServer
	events ParkedEvents
	logger *slog.Logger
}

var _ opsv1.ParkedEventServiceServer = (*Parked)(nil)

// NewParked returns the ParkedEventService server over events.
func NewParked(events ParkedEvents, logger *slog.Logger) *Parked {
	return &Parked{events: events, logger: logs.OrDiscard(logger)}
}

// ListParkedEvents implements ParkedEventService.
func (p *Parked) ListParkedEvents(ctx context.Context, req *opsv1.ListParkedEventsRequest) (*opsv1.ListParkedEventsResponse, error) {
	size, err := grpcserver.PageSize(req.GetPageSize(), DefaultParkedPageSize, MaxParkedPageSize)
	if err != nil {
		return nil, err
	}
	if req.GetAggregateId() != "" && req.GetAggregateType() == "" {
		return nil, status.Error(codes.InvalidArgument, "aggregate_id needs aggregate_type")
	}
	resp := &opsv1.ListParkedEventsResponse{}
	if src := req.GetSource(); src != "" && src != p.events.Consumer() {
		return resp, nil // this server holds no other source's events
	}
	f := inbox.ListFilter{
		AggregateType: req.GetAggregateType(), AggregateID: req.GetAggregateId(),
		IncludeResolved: req.GetIncludeResolved(), Limit: size + 1, // one more tells whether a next page exists
	}
	if tok := req.GetPageToken(); tok != "" {
		after, err := decodeParkedToken(tok)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token is not a token from a previous response")
		}
		f.After = after
	}
	page, err := p.events.List(ctx, f)
	if err != nil {
		return nil, p.toStatus(ctx, err)
	}
	if len(page) > size {
		page = page[:size]
		resp.NextPageToken = encodeParkedToken(page[size-1].ID)
	}
	resp.Events = make([]*opsv1.ParkedEvent, len(page))
	for i, e := range page {
		resp.Events[i] = parkedToProto(e)
	}
	return resp, nil
}

// ReplayParkedEvent implements ParkedEventService.
func (p *Parked) ReplayParkedEvent(ctx context.Context, req *opsv1.ReplayParkedEventRequest) (*opsv1.ReplayParkedEventResponse, error) {
	id, err := p.target(req.GetEventId(), req.GetSource())
	if err != nil {
		return nil, err
	}
	results, err := p.events.Replay(ctx, id, caller.From(ctx).String(), req.GetReason())
	if err != nil && len(results) == 0 {
		return nil, p.toStatus(ctx, err)
	}
	if err != nil { // replayed some, then the database failed: say what was done
		p.logger.WarnContext(ctx, "replay of parked events stopped", "event_id", id.String(), "error", err.Error())
	}
	resp := &opsv1.ReplayParkedEventResponse{Results: make([]*opsv1.ReplayResult, len(results))}
	for i, r := range results {
		out := &opsv1.ReplayResult{EventId: r.EventID.String(), Result: r.Result}
		if r.Err != nil {
			// The handler's error, for an operator: the same text the
			// parked row's error shows them in ListParkedEvents.
			out.Error = r.Err.Error()
		}
		resp.Results[i] = out
	}
	return resp, nil
}

// DiscardParkedEvent implements ParkedEventService.
func (p *Parked) DiscardParkedEvent(ctx context.Context, req *opsv1.DiscardParkedEventRequest) (*opsv1.DiscardParkedEventResponse, error) {
	id, err := p.target(req.GetEventId(), req.GetSource())
	if err != nil {
		return nil, err
	}
	if req.GetReason() == "" {
		return nil, status.Error(codes.InvalidArgument, "reason is required")
	}
	e, err := p.events.Discard(ctx, id, caller.From(ctx).String(), req.GetReason())
	if err != nil {
		return nil, p.toStatus(ctx, err)
	}
	return &opsv1.DiscardParkedEventResponse{Event: parkedToProto(e)}, nil
}

// target checks the event id and that source, if named, is this server's.
func (p *Parked) target(eventID, source string) (uuid.UUID, error) {
	id, err := uuid.Parse(eventID)
	if err != nil {
		return uuid.Nil, status.Error(codes.InvalidArgument, "event_id must be a UUID")
	}
	if source != "" && source != p.events.Consumer() {
		return uuid.Nil, status.Errorf(codes.NotFound, "source %q: this server holds the parked events of %s", source, p.events.Consumer())
	}
	return id, nil
}

func (p *Parked) toStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, inbox.ErrParkedNotFound):
		return status.Error(codes.NotFound, "parked event not found")
	case errors.Is(err, inbox.ErrNotParked):
		return status.Error(codes.FailedPrecondition, "event_id: the event is not parked (resolved already)")
	case errors.Is(err, inbox.ErrParkedBehind):
		return status.Error(codes.FailedPrecondition, "event_id: "+err.Error())
	case errors.Is(err, inbox.ErrReasonRequired):
		return status.Error(codes.InvalidArgument, "reason is required")
	case errors.Is(err, inbox.ErrReasonTooLong):
		return status.Errorf(codes.InvalidArgument, "reason must be at most %d bytes", inbox.MaxReason)
	default:
		return grpcerr.Fallback(ctx, p.logger, "parked events request", err)
	}
}

var resolutionToState = map[string]opsv1.ParkedEventState{
	"":                        opsv1.ParkedEventState_PARKED_EVENT_STATE_PARKED,
	inbox.ResolutionReplayed:  opsv1.ParkedEventState_PARKED_EVENT_STATE_REPLAYED,
	inbox.ResolutionDiscarded: opsv1.ParkedEventState_PARKED_EVENT_STATE_DISCARDED,
}

func parkedToProto(e inbox.Parked) *opsv1.ParkedEvent {
	out := &opsv1.ParkedEvent{
		EventId: e.EventID.String(), Source: e.Consumer, EventType: e.EventType,
		AggregateType: e.AggregateType, AggregateId: e.AggregateID, AggregateVersion: e.AggregateVersion,
		Error: e.Error, Attempts: int32(e.ReplayAttempts), ParkedAt: timestamppb.New(e.ParkedAt),
		State:      opsv1.ParkedEventState_PARKED_EVENT_STATE_PARKED,
		ResolvedBy: e.ResolvedBy, ResolutionReason: e.ResolutionReason,
		Topic: e.Topic, Partition: int32(e.Partition), Offset: e.Offset,
	}
	if e.ResolvedAt != nil {
		out.ResolvedAt = timestamppb.New(*e.ResolvedAt)
		out.State = resolutionToState[e.Resolution]
		if e.Resolution == "" { // resolved by hand, before the admin existed
			out.State = opsv1.ParkedEventState_PARKED_EVENT_STATE_DISCARDED
		}
	}
	return out
}

// Parked page tokens: base64url of version(1) | last id(8).
const parkedTokenVersion = 1

func encodeParkedToken(after int64) string {
	b := append(make([]byte, 0, 9), parkedTokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(after))
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeParkedToken(tok string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 9 || b[0] != parkedTokenVersion {
		return 0, errors.New("bad page token")
	}
	return int64(binary.BigEndian.Uint64(b[1:])), nil
}

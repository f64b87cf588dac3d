// Package grpcapi implements orchestratorv1.SagaService, the operators' view
// of sagas: query them (with their step history) and retry or abort them.
// Customers may follow their own sagas. Errors become gRPC codes in one
// place (toStatus).
package grpcapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcerr"
	"github.com/goodgo/goodgo/platform/grpcserver"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/ratelimit"
	"github.com/goodgo/goodgo/platform/saga"
	opsv1 "github.com/goodgo/goodgo/proto/goodgo/ops/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	"github.com/goodgo/goodgo/services/orchestrator/internal/checkout"
)

// Sagas is what the API needs of the saga engine (saga.Engine).
type Sagas interface {
	// Get returns one saga or saga.ErrNotFound.
	Get(ctx context.Context, id uuid.UUID) (saga.Saga, error)
	// List returns a page of sagas, newest first.
	List(ctx context.Context, f saga.ListFilter) ([]saga.Saga, error)
	// Retry resumes a PARKED saga's compensation (else saga.ErrIllegalState).
	Retry(ctx context.Context, id uuid.UUID, actor string) (saga.Saga, error)
	// Abort compensates a RUNNING saga now (else saga.ErrIllegalState).
	Abort(ctx context.Context, id uuid.UUID, actor, reason string) (saga.Saga, error)
}

var _ Sagas = (*saga.Engine)(nil)

// Page sizes of ListSagas.
const (
	DefaultPageSize = 20
	MaxPageSize     = 100
	maxReason       = 500
)

// Server implements SagaService.
type Server struct {
	orchestratorv1.UnimplementedSagaServiceServer
	sagas  Sagas
	logger *slog.Logger
}

var _ orchestratorv1.SagaServiceServer = (*Server)(nil)

// New returns the SagaService server over sagas, logging unexpected errors
// to logger.
func New(sagas Sagas, logger *slog.Logger) *Server {
	return &Server{sagas: sagas, logger: logs.OrDiscard(logger)}
}

// Policies say who may call each RPC (platform/authz): signed-in users
// read (their own sagas only, which the handlers enforce), operators
// operate.
func Policies() authz.Policies {
	operators := authz.Policy{Roles: []string{caller.RoleOperator}, Limit: ratelimit.Write}
	return authz.Policies{
		orchestratorv1.SagaService_GetSaga_FullMethodName:   {Users: true, Limit: ratelimit.Read},
		orchestratorv1.SagaService_ListSagas_FullMethodName: {Users: true, Limit: ratelimit.Read},
		orchestratorv1.SagaService_RetrySaga_FullMethodName: operators,
		orchestratorv1.SagaService_AbortSaga_FullMethodName: operators,
		// The inbox's parked events: operators (or admins) only, reads
		// included (an event's error may name what a customer ordered).
		opsv1.ParkedEventService_ListParkedEvents_FullMethodName:   {Roles: []string{caller.RoleOperator}, Limit: ratelimit.Read},
		opsv1.ParkedEventService_ReplayParkedEvent_FullMethodName:  operators,
		opsv1.ParkedEventService_DiscardParkedEvent_FullMethodName: operators,
	}
}

// IdempotencyPolicies are the idempotency policies of SagaService's and
// ParkedEventService's mutating RPCs (platform/idempotency). All are safe
// without Redis, so they are RedisDownSafe: a repeated RetrySaga or
// AbortSaga finds the saga no longer PARKED or RUNNING, a repeated
// ReplayParkedEvent or DiscardParkedEvent finds the event resolved, and
// changes nothing (FailedPrecondition).
func IdempotencyPolicies() map[string]idempotency.Policy {
	return map[string]idempotency.Policy{
		orchestratorv1.SagaService_RetrySaga_FullMethodName: {RedisDownSafe: true},
		orchestratorv1.SagaService_AbortSaga_FullMethodName: {RedisDownSafe: true},
		// A repeated replay or discard finds the event resolved (its row is
		// locked and checked): FailedPrecondition, nothing done twice.
		opsv1.ParkedEventService_ReplayParkedEvent_FullMethodName:  {RedisDownSafe: true},
		opsv1.ParkedEventService_DiscardParkedEvent_FullMethodName: {RedisDownSafe: true},
	}
}

// GetSaga implements SagaService. A user who is not an operator sees only
// the sagas started for them; anyone else's is NotFound, like an unknown
// one.
func (s *Server) GetSaga(ctx context.Context, req *orchestratorv1.GetSagaRequest) (*orchestratorv1.GetSagaResponse, error) {
	id, err := parseID(req.GetSagaId())
	if err != nil {
		return nil, err
	}
	sg, err := s.sagas.Get(ctx, id)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if who := caller.From(ctx); !who.IsOperator() && sg.StartedBy != who.EndUser() {
		return nil, s.toStatus(ctx, saga.ErrNotFound)
	}
	return &orchestratorv1.GetSagaResponse{Saga: toProto(sg)}, nil
}

// ListSagas implements SagaService: keyset pagination on (creation time,
// id), newest first. The page token is opaque to clients.
func (s *Server) ListSagas(ctx context.Context, req *orchestratorv1.ListSagasRequest) (*orchestratorv1.ListSagasResponse, error) {
	size, err := grpcserver.PageSize(req.GetPageSize(), DefaultPageSize, MaxPageSize)
	if err != nil {
		return nil, err
	}
	// one more tells whether a next page exists
	f := saga.ListFilter{Limit: size + 1, CorrelationID: req.GetCorrelationId(), StartedBy: req.GetStartedBy()}
	if who := caller.From(ctx); !who.IsOperator() {
		if f.StartedBy != "" && f.StartedBy != who.EndUser() {
			return nil, status.Error(codes.PermissionDenied, "started_by: only operators may list another user's sagas")
		}
		f.StartedBy = who.EndUser()
	}
	if st := req.GetState(); st != orchestratorv1.SagaState_SAGA_STATE_UNSPECIFIED {
		state, ok := stateFromProto[st]
		if !ok {
			return nil, status.Error(codes.InvalidArgument, "state is not a known saga state")
		}
		f.State = state
	}
	if cb := req.GetCreatedBefore(); cb != nil {
		if err := cb.CheckValid(); err != nil {
			return nil, status.Error(codes.InvalidArgument, "created_before is not a valid timestamp")
		}
		f.CreatedBefore = cb.AsTime()
	}
	if tok := req.GetPageToken(); tok != "" {
		c, err := decodeToken(tok)
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token is not a token from a previous response")
		}
		f.After = &c
	}
	page, err := s.sagas.List(ctx, f)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &orchestratorv1.ListSagasResponse{}
	if len(page) > size {
		page = page[:size]
		last := page[size-1]
		resp.NextPageToken = encodeToken(saga.ListCursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	resp.Sagas = make([]*orchestratorv1.Saga, len(page))
	for i, sg := range page {
		resp.Sagas[i] = toProto(sg)
	}
	return resp, nil
}

// RetrySaga implements SagaService, for operators; the operator's verified
// identity is audited.
func (s *Server) RetrySaga(ctx context.Context, req *orchestratorv1.RetrySagaRequest) (*orchestratorv1.RetrySagaResponse, error) {
	id, err := parseID(req.GetSagaId())
	if err != nil {
		return nil, err
	}
	sg, err := s.sagas.Retry(ctx, id, caller.From(ctx).String())
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &orchestratorv1.RetrySagaResponse{Saga: toProto(sg)}, nil
}

// AbortSaga implements SagaService, for operators; the operator's verified
// identity is audited.
func (s *Server) AbortSaga(ctx context.Context, req *orchestratorv1.AbortSagaRequest) (*orchestratorv1.AbortSagaResponse, error) {
	id, err := parseID(req.GetSagaId())
	if err != nil {
		return nil, err
	}
	if len(req.GetReason()) > maxReason {
		return nil, status.Errorf(codes.InvalidArgument, "reason must be at most %d bytes", maxReason)
	}
	actor := caller.From(ctx).String()
	// The prefix marks the reason as an operator's words, which the saga
	// passes on to the order (checkout.Reason) instead of a generic text.
	reason := checkout.AbortPrefix + actor
	if req.GetReason() != "" {
		reason += ": " + req.GetReason()
	}
	sg, err := s.sagas.Abort(ctx, id, actor, reason)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	return &orchestratorv1.AbortSagaResponse{Saga: toProto(sg)}, nil
}

func parseID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, status.Error(codes.InvalidArgument, "saga_id must be a UUID")
	}
	return id, nil
}

// toStatus is the one mapping from errors to statuses. Only the engine's
// own state messages reach clients; anything else is logged and reported
// as Internal.
func (s *Server) toStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return status.Error(codes.NotFound, "saga not found")
	case errors.Is(err, saga.ErrIllegalState):
		return status.Error(codes.FailedPrecondition, err.Error())
	default:
		return grpcerr.Fallback(ctx, s.logger, "saga request", err)
	}
}

var (
	stateToProto = map[saga.State]orchestratorv1.SagaState{
		saga.StateRunning:      orchestratorv1.SagaState_SAGA_STATE_RUNNING,
		saga.StateCompensating: orchestratorv1.SagaState_SAGA_STATE_COMPENSATING,
		saga.StateCompleted:    orchestratorv1.SagaState_SAGA_STATE_COMPLETED,
		saga.StateCompensated:  orchestratorv1.SagaState_SAGA_STATE_COMPENSATED,
		saga.StateParked:       orchestratorv1.SagaState_SAGA_STATE_PARKED,
	}
	stateFromProto = func() map[orchestratorv1.SagaState]saga.State {
		m := make(map[orchestratorv1.SagaState]saga.State, len(stateToProto))
		for k, v := range stateToProto {
			m[v] = k
		}
		return m
	}()
	phaseToProto = map[saga.Phase]orchestratorv1.StepPhase{
		saga.PhaseAction:       orchestratorv1.StepPhase_STEP_PHASE_ACTION,
		saga.PhaseCompensation: orchestratorv1.StepPhase_STEP_PHASE_COMPENSATION,
	}
	stepStatusToProto = map[saga.StepStatus]orchestratorv1.StepStatus{
		saga.StepRunning:   orchestratorv1.StepStatus_STEP_STATUS_RUNNING,
		saga.StepSucceeded: orchestratorv1.StepStatus_STEP_STATUS_SUCCEEDED,
		saga.StepFailed:    orchestratorv1.StepStatus_STEP_STATUS_FAILED,
	}
)

func toProto(s saga.Saga) *orchestratorv1.Saga {
	out := &orchestratorv1.Saga{
		SagaId:        s.ID.String(),
		SagaType:      s.Type,
		CorrelationId: s.CorrelationID,
		State:         stateToProto[s.State],
		FailureReason: s.FailureReason,
		StartedBy:     s.StartedBy,
		CreateTime:    timestamppb.New(s.CreatedAt),
		UpdateTime:    timestamppb.New(s.UpdatedAt),
		Deadline:      timestamppb.New(s.Deadline),
		Steps:         make([]*orchestratorv1.StepExecution, len(s.Steps)),
	}
	for i, st := range s.Steps {
		pe := &orchestratorv1.StepExecution{
			Name:      st.Name,
			Phase:     phaseToProto[st.Phase],
			Status:    stepStatusToProto[st.Status],
			Attempts:  int32(st.Attempts),
			LastError: st.LastError,
			StartTime: timestamppb.New(st.StartedAt),
		}
		if st.EndedAt != nil {
			pe.EndTime = timestamppb.New(*st.EndedAt)
		}
		out.Steps[i] = pe
	}
	return out
}

// Page tokens: base64url of version(1) | created_at unix micros(8) | id(16).
// Micro-seconds are PostgreSQL's resolution, so the cursor is exact.
const tokenVersion = 1

func encodeToken(c saga.ListCursor) string {
	b := make([]byte, 0, 25)
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.CreatedAt.UnixMicro()))
	b = append(b, c.ID[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(tok string) (saga.ListCursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 25 || b[0] != tokenVersion {
		return saga.ListCursor{}, errors.New("bad page token")
	}
	id, err := uuid.FromBytes(b[9:])
	if err != nil {
		return saga.ListCursor{}, err
	}
	return saga.ListCursor{CreatedAt: time.UnixMicro(int64(binary.BigEndian.Uint64(b[1:9]))), ID: id}, nil
}

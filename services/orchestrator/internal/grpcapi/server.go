// Package grpcapi implements orchestratorv1.SagaService, the operators' view
// of sagas: query them and retry or abort them.
package grpcapi

import (
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
)

// Server implements SagaService. The saga engine arrives with the
// orchestrator issue; until then every RPC answers Unimplemented.
type Server struct {
	orchestratorv1.UnimplementedSagaServiceServer
}

var _ orchestratorv1.SagaServiceServer = (*Server)(nil)

// New returns the SagaService server.
func New() *Server { return &Server{} }

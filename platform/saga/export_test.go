package saga

import (
	"context"

	"github.com/google/uuid"
)

// Execute runs saga id as ExecuteStarted runs a saga StartTx did not
// create: for the tests that execute a saga by id alone.
func (e *Engine) Execute(ctx context.Context, id uuid.UUID) error { return e.execute(ctx, id) }

// GroupCommits reports whether the executions' writes are group-committed.
func (e *Engine) GroupCommits() bool { return e.grouped != e.q }

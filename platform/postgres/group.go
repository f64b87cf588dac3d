package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/goodgo/goodgo/platform/batch"
)

// Group commit: many callers each write one statement on their own (the
// saga engine's transitions, one per step of every saga in flight), and
// each statement sent alone is a transaction of its own: a round trip, a
// commit and a WAL flush each. A Group sends the single-row statements of
// concurrent callers together, in one round trip and one transaction, and
// gives each caller its own row.
//
// The batch is one implicit transaction (one Sync at its end, no BEGIN):
// PostgreSQL commits all of it or none. Each caller returns only once the
// commit is known, so a write the caller saw succeed is as durable as
// one sent alone. A statement that fails aborts the batch; its statements
// are then sent again one at a time, so that one caller's error stays its
// own (the others' statements were rolled back, not done). A failed round
// trip (the connection broke) leaves the batch's outcome unknown: each of
// its callers gets the error, as a caller whose statement was lost alone
// would; the statements must therefore be safe to run again or guarded
// (the saga's are, by version and lease owner).
//
// The batching is package batch's: no waiting to fill a batch, at most
// MaxInFlight batches in flight, a lone caller pays what it would pay
// without the Group.

// Group defaults.
const (
	DefaultGroupInFlight = 2
	DefaultGroupBatch    = 64
)

// GroupOptions configure a Group.
type GroupOptions struct {
	// MaxInFlight is how many batches may be in flight at once;
	// DefaultGroupInFlight if 0.
	MaxInFlight int
	// MaxBatch caps the statements of one batch; DefaultGroupBatch if 0.
	MaxBatch int
	// Timeout bounds a batch's round trip, which no caller's context
	// cancels once it is taken (see QueryRow). Required.
	Timeout time.Duration
}

// Sender is what a Group sends batches, lone statements and its ungrouped
// statements on: a *pgxpool.Pool.
type Sender interface {
	DBTX
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

// Group is a DBTX whose QueryRow statements are group-committed with those
// of concurrent callers (see above). Exec and Query are not grouped: they
// go to the pool as they are.
type Group struct {
	db    Sender
	opts  GroupOptions
	queue *batch.Queue[*groupedRow]
}

// NewGroup returns a Group over pool.
func NewGroup(pool Sender, opts GroupOptions) (*Group, error) {
	if opts.Timeout <= 0 {
		return nil, errors.New("postgres: GroupOptions.Timeout is required")
	}
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = DefaultGroupInFlight
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultGroupBatch
	}
	g := &Group{db: pool, opts: opts}
	g.queue = batch.New(opts.MaxInFlight, opts.MaxBatch, g.send)
	return g, nil
}

// Exec implements DBTX, ungrouped.
func (g *Group) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return g.db.Exec(ctx, sql, args...)
}

// Query implements DBTX, ungrouped.
func (g *Group) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return g.db.Query(ctx, sql, args...)
}

// QueryRow implements DBTX: the statement joins the next batch when its
// row is scanned. If ctx ends while the statement is still queued, Scan
// returns ctx's error and the statement is never sent; once a batch has
// taken it, Scan waits for its outcome (at most Timeout), since the
// statement may commit.
func (g *Group) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return &groupedRow{g: g, ctx: ctx, sql: sql, args: args}
}

// groupedRow is one caller's statement; done is closed once err holds its
// outcome and dest its values.
type groupedRow struct {
	g    *Group
	ctx  context.Context
	sql  string
	args []any
	dest []any
	err  error
	done chan struct{}
}

func (r *groupedRow) Scan(dest ...any) error {
	r.dest, r.done = dest, make(chan struct{})
	r.g.queue.Add(r)
	select {
	case <-r.done:
		return r.err
	case <-r.ctx.Done():
	}
	if r.g.queue.Remove(r) {
		return fmt.Errorf("postgres: grouped statement not sent: %w", r.ctx.Err())
	}
	<-r.done // in a batch: it may be on its way and commit, so its outcome is awaited
	return r.err
}

// send runs a batch and wakes its callers. It runs without the callers'
// cancellation (each waits for its outcome) but with the first one's
// values (its span is the batch's parent), bounded by Timeout.
func (g *Group) send(taken []*groupedRow) {
	defer func() {
		for _, r := range taken {
			close(r.done)
		}
	}()
	// A caller that left before its batch went out is not sent for.
	live := make([]*groupedRow, 0, len(taken))
	for _, r := range taken {
		if err := r.ctx.Err(); err != nil {
			r.err = fmt.Errorf("postgres: grouped statement not sent: %w", err)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), g.opts.Timeout)
	defer cancel()
	if len(live) == 1 {
		g.sendAlone(ctx, live[0])
		return
	}
	b := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(live))}
	for _, r := range live {
		b.Queue(r.sql, r.args...)
	}
	br := g.db.SendBatch(ctx, b)
	aborted := false
	for _, r := range live {
		r.err = br.QueryRow().Scan(r.dest...)
		var pgErr *pgconn.PgError
		if errors.As(r.err, &pgErr) {
			aborted = true
		}
	}
	if err := br.Close(); err != nil {
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			// The round trip failed: whether the batch committed is
			// unknown, and every caller gets to know it.
			for _, r := range live {
				r.err = fmt.Errorf("postgres: grouped statement, outcome unknown: %w", err)
			}
			return
		}
		aborted = true
	}
	if aborted {
		// A statement failed: PostgreSQL rolled the whole batch back.
		// One at a time now, so that only that statement's caller
		// gets an error.
		for _, r := range live {
			g.sendAlone(ctx, r)
		}
	}
}

func (g *Group) sendAlone(ctx context.Context, r *groupedRow) {
	r.err = g.db.QueryRow(ctx, r.sql, r.args...).Scan(r.dest...)
}

package saga_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/goodgo/goodgo/platform/saga"
)

// BenchmarkSagaCompensation runs the checkout's shape on the engine alone
// (no-op steps "payment", "stock" and the pivot "confirm", each with a
// no-op compensation, the pivot without one) where one step refuses for
// good (saga.Permanent): fail=payment (declined: nothing to undo),
// fail=stock (short: the payment is refunded), fail=confirm (refused: the
// stock is released, then the payment refunded). Each of 16 clients starts
// a saga and waits for its end (closed loop). It reports sagas/s and the
// compensation latency percentiles: from the refusal (the failing action's
// return) to the saga stored COMPENSATED.
//
//	go test -run '^$' -bench SagaCompensation -benchtime 2000x -count 5 ./saga/
func BenchmarkSagaCompensation(b *testing.B) {
	for _, fail := range []string{"payment", "stock", "confirm"} {
		b.Run("fail="+fail, func(b *testing.B) {
			benchmarkCompensation(b, fail, 16)
		})
	}
}

var errRefused = errors.New("refused by the benchmark")

func benchmarkCompensation(b *testing.B, fail string, inflight int) {
	// failedAt holds the moment each saga's refusal returned; ended is
	// closed at its outcome.
	var failedAt, ended sync.Map
	endCh := func(id uuid.UUID) chan saga.State {
		ch, _ := ended.LoadOrStore(id, make(chan saga.State, 1))
		return ch.(chan saga.State)
	}
	noop := func(context.Context, *saga.Execution) error { return nil }
	action := func(name string) saga.Func {
		if name != fail {
			return noop
		}
		return func(_ context.Context, x *saga.Execution) error {
			failedAt.Store(x.SagaID, time.Now())
			return saga.Permanent(errRefused)
		}
	}
	def := &saga.Definition{Name: "bench_compensation", Steps: saga.Sequence(
		saga.Step{Name: "payment", Action: action("payment"), Compensate: noop},
		saga.Step{Name: "stock", Action: action("stock"), Compensate: noop},
		saga.Step{Name: "confirm", Action: action("confirm"), Pivot: true},
	)}
	e := benchEngine(b, inflight, func(id uuid.UUID, st saga.State) { endCh(id) <- st }, def)

	closedLoop(b, inflight, func(i int64) (time.Duration, bool) {
		id, ok := benchStart(b, e, def, i)
		if !ok {
			return 0, false
		}
		st := <-endCh(id)
		end := time.Now()
		if st != saga.StateCompensated {
			b.Errorf("saga %s ended %s, want %s", id, st, saga.StateCompensated)
			return 0, false
		}
		t0, ok := failedAt.Load(id)
		if !ok {
			b.Errorf("saga %s compensated without its refusal", id)
			return 0, false
		}
		failedAt.Delete(id)
		ended.Delete(id)
		return end.Sub(t0.(time.Time)), true
	})
}

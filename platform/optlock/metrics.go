package optlock

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics records optimistic-lock outcomes per aggregate type under the
// seed's names:
//
//	optimistic_lock_attempts_total{aggregate}   conditional updates tried
//	optimistic_lock_conflicts_total{aggregate}  of those, lost to a version change
//	optimistic_lock_retries_total{aggregate}    re-executions by Retry after a conflict
//	optimistic_lock_success_rate{aggregate}     1 - conflicts/attempts since process start
//
// The success rate is a lifetime ratio (0..1, not a percentage), computed at
// scrape time from the same counts. For a windowed rate, as the seed's
// HighOptimisticLockConflicts alert does, divide the rates of the counters.
//
// A nil *Metrics is valid and records nothing. Methods are safe for
// concurrent use.
type Metrics struct {
	attempts  *prometheus.CounterVec
	conflicts *prometheus.CounterVec
	retries   *prometheus.CounterVec
	rateDesc  *prometheus.Desc

	aggregates sync.Map // aggregate → *aggregateMetrics
}

// aggregateMetrics holds one aggregate's series. attempts and conflicts are
// mirrored in plain counts because a Prometheus counter cannot be read back
// for the success rate.
type aggregateMetrics struct {
	attempts, conflicts, retries prometheus.Counter
	nAttempts, nConflicts        atomic.Uint64
}

// NewMetrics registers the optimistic_lock_* metrics on reg. It fails if reg
// already holds them.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "optimistic_lock_attempts_total",
			Help: "Conditional (version-checked) updates attempted.",
		}, []string{"aggregate"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "optimistic_lock_conflicts_total",
			Help: "Conditional updates that matched no row because the version had changed.",
		}, []string{"aggregate"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "optimistic_lock_retries_total",
			Help: "Updates re-executed after a version conflict.",
		}, []string{"aggregate"}),
		rateDesc: prometheus.NewDesc("optimistic_lock_success_rate",
			"Share of conditional updates without a version conflict since process start (1 - conflicts/attempts).",
			[]string{"aggregate"}, nil),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.conflicts, m.retries, successRate{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("optlock: register metrics: %w", err)
		}
	}
	return m, nil
}

// Record counts the outcome of one conditional update of aggregate (a fixed
// aggregate type name such as "order", never an id: it is a label), judged
// by err:
//
//   - nil: the update ran and won, one attempt;
//   - an error wrapping [ErrConflict]: it lost to a version change, one
//     attempt and one conflict;
//   - any other error: nothing is counted, because the conditional update
//     did not run or its result is unknown (invalid input, a missing row, a
//     state transition refused before the write, a failed connection, a
//     cancelled context). Counting those would dilute the conflict rate.
//
// A nil err is taken to mean that the update ran, so record only what
// reached the write: decide no-ops (nothing to change) before calling
// Record or Retry. It returns err unchanged, so a repository can end with
// `return m.Record("order", err)`. Use it on paths that do not retry (a
// client presenting a version token); [Retry] calls it itself.
func (m *Metrics) Record(aggregate string, err error) error {
	if m == nil {
		return err
	}
	a := m.forAggregate(aggregate) // exported from the first use, even at zero
	conflict := errors.Is(err, ErrConflict)
	if err != nil && !conflict {
		return err
	}
	a.nAttempts.Add(1)
	a.attempts.Inc()
	if conflict {
		a.nConflicts.Add(1)
		a.conflicts.Inc()
	}
	return err
}

func (m *Metrics) retry(aggregate string) {
	if m != nil {
		m.forAggregate(aggregate).retries.Inc()
	}
}

// forAggregate returns the aggregate's series, creating all of them at zero
// on first use so that rate() and the conflict-rate alert see every series
// from the start.
func (m *Metrics) forAggregate(aggregate string) *aggregateMetrics {
	if a, ok := m.aggregates.Load(aggregate); ok {
		return a.(*aggregateMetrics)
	}
	a, _ := m.aggregates.LoadOrStore(aggregate, &aggregateMetrics{
		attempts:  m.attempts.WithLabelValues(aggregate),
		conflicts: m.conflicts.WithLabelValues(aggregate),
		retries:   m.retries.WithLabelValues(aggregate),
	})
	return a.(*aggregateMetrics)
}

// successRate exports optimistic_lock_success_rate, computed at scrape time.
type successRate struct{ m *Metrics }

func (s successRate) Describe(ch chan<- *prometheus.Desc) { ch <- s.m.rateDesc }

func (s successRate) Collect(ch chan<- prometheus.Metric) {
	s.m.aggregates.Range(func(key, value any) bool {
		a := value.(*aggregateMetrics)
		// Read conflicts before attempts: Record bumps them in the opposite
		// order, so the pair read never has more conflicts than attempts and
		// the rate stays within [0, 1].
		conflicts := a.nConflicts.Load()
		attempts := a.nAttempts.Load()
		if attempts == 0 {
			return true
		}
		ch <- prometheus.MustNewConstMetric(s.m.rateDesc, prometheus.GaugeValue,
			1-float64(conflicts)/float64(attempts), key.(string))
		return true
	})
}

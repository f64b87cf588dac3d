package saga

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of saga_executions_total and saga_duration_seconds.
const (
	OutcomeCompleted   = "completed"
	OutcomeCompensated = "compensated"
	OutcomeParked      = "parked"
)

// metrics are the seed's saga_* series plus a few the engine needs to be
// operated:
//
//	saga_executions_total{saga_type,outcome}     sagas that ended: completed, compensated, parked
//	saga_duration_seconds{saga_type,outcome}     start to that end
//	saga_compensations_total{saga_type,step}     compensations executed (one per undone step)
//	saga_timeout_total{saga_type}                sagas that hit their deadline and compensated
//	saga_pending_count                           RUNNING + COMPENSATING sagas (whole database, sampled)
//	saga_parked_count                            PARKED sagas waiting for an operator (sampled)
//	saga_step_retries_total{saga_type,step,phase} retries after transient errors
//	saga_lease_lost_total                        executions stopped because another replica took over
//	saga_claims_total                            sagas claimed by the recovery loop (takeovers, resumes)
//
// A parked saga that an operator retries and that then compensates is
// counted again, as compensated.
type metrics struct {
	executions    *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	compensations *prometheus.CounterVec
	timeouts      *prometheus.CounterVec
	pending       prometheus.Gauge
	parked        prometheus.Gauge
	retries       *prometheus.CounterVec
	leaseLost     prometheus.Counter
	claims        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		executions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_executions_total",
			Help: "Sagas that reached an outcome: completed, compensated or parked.",
		}, []string{"saga_type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "saga_duration_seconds",
			Help:    "Time from a saga's start to its outcome.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300},
		}, []string{"saga_type", "outcome"}),
		compensations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_compensations_total",
			Help: "Compensations executed (one per undone step).",
		}, []string{"saga_type", "step"}),
		timeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_timeout_total",
			Help: "Sagas that reached their deadline and compensated.",
		}, []string{"saga_type"}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "saga_pending_count",
			Help: "Sagas currently executing (RUNNING or COMPENSATING) in the database, sampled.",
		}),
		parked: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "saga_parked_count",
			Help: "Sagas PARKED after failing to compensate, waiting for an operator, sampled.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_step_retries_total",
			Help: "Step calls retried after a transient error.",
		}, []string{"saga_type", "step", "phase"}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "saga_lease_lost_total",
			Help: "Saga executions stopped because this replica lost the saga's lease.",
		}),
		claims: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "saga_claims_total",
			Help: "Sagas claimed by the recovery loop (expired leases, due retries, operator actions).",
		}),
	}
	for _, c := range []prometheus.Collector{m.executions, m.duration, m.compensations, m.timeouts,
		m.pending, m.parked, m.retries, m.leaseLost, m.claims} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("saga: register metrics: %w", err)
		}
	}
	return m, nil
}

// init creates the series of a definition at zero, so that rate() and
// alerts see them from the start.
func (m *metrics) init(def *Definition) {
	for _, o := range []string{OutcomeCompleted, OutcomeCompensated, OutcomeParked} {
		m.executions.WithLabelValues(def.Name, o)
	}
	m.timeouts.WithLabelValues(def.Name)
	for _, g := range def.Steps {
		for _, s := range g {
			if s.Compensate != nil {
				m.compensations.WithLabelValues(def.Name, s.Name)
			}
		}
	}
}

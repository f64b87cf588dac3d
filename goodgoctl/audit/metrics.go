package audit

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics export the outcome of periodic audits. Alert on
// consistency_violations > 0, and on a consistency_audit_last_success_
// timestamp_seconds that stops moving (the auditor cannot read).
type Metrics struct {
	violations  *prometheus.GaugeVec
	runs        *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	duration    prometheus.Gauge
	orders      *prometheus.GaugeVec
	quiescent   prometheus.Gauge
}

// NewMetrics registers the auditor's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		violations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consistency_violations",
			Help: "Violations of each kind of cross-service invariant found by the last successful audit.",
		}, []string{"kind"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "consistency_audit_runs_total",
			Help: "Audits run, by result: ok (no violation), violations, error (the services could not be read).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consistency_audit_last_success_timestamp_seconds",
			Help: "Unix time at which the last audit that could read everything finished.",
		}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consistency_audit_duration_seconds",
			Help: "How long the last audit took.",
		}),
		orders: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "consistency_audit_orders",
			Help: "Orders seen by the last successful audit: audited (saga ended) or in_flight (saga running).",
		}, []string{"state"}),
		quiescent: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "consistency_audit_quiescent",
			Help: "1 if the last successful audit saw no saga running, so that stock counters were compared too.",
		}),
	}
	for _, c := range []prometheus.Collector{m.violations, m.runs, m.lastSuccess, m.duration, m.orders, m.quiescent} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, k := range Kinds {
		m.violations.WithLabelValues(string(k))
	}
	for _, r := range []string{"ok", "violations", "error"} {
		m.runs.WithLabelValues(r)
	}
	return m, nil
}

// Observe records one audit that took took and finished at end: its report,
// or the error that kept it from reading the services (the gauges of the
// last success then stay as they were).
func (m *Metrics) Observe(r *Report, err error, took time.Duration, end time.Time) {
	m.duration.Set(took.Seconds())
	if err != nil || r == nil {
		m.runs.WithLabelValues("error").Inc()
		return
	}
	counts := r.Count()
	for _, k := range Kinds {
		m.violations.WithLabelValues(string(k)).Set(float64(counts[k]))
	}
	if len(r.Violations) > 0 {
		m.runs.WithLabelValues("violations").Inc()
	} else {
		m.runs.WithLabelValues("ok").Inc()
	}
	m.lastSuccess.Set(float64(end.UnixNano()) / 1e9)
	m.orders.WithLabelValues("audited").Set(float64(r.Audited))
	m.orders.WithLabelValues("in_flight").Set(float64(r.InFlight))
	q := 0.0
	if r.Snapshot != nil && r.Snapshot.Quiescent {
		q = 1
	}
	m.quiescent.Set(q)
}

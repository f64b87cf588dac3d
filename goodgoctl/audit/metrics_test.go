package audit_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/goodgoctl/audit"
)

func TestMetricsShowTheLastAudit(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := audit.NewMetrics(reg)
	require.NoError(t, err)

	s := settled()
	s.Payments["a"].Amount = 1
	m.Observe(audit.Check(s, time.Minute), nil, 2*time.Second, now)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP consistency_audit_last_success_timestamp_seconds Unix time at which the last audit that could read everything finished.
# TYPE consistency_audit_last_success_timestamp_seconds gauge
consistency_audit_last_success_timestamp_seconds 1.7961984e+09
# HELP consistency_audit_runs_total Audits run, by result: ok (no violation), violations, error (the services could not be read).
# TYPE consistency_audit_runs_total counter
consistency_audit_runs_total{result="error"} 0
consistency_audit_runs_total{result="ok"} 0
consistency_audit_runs_total{result="violations"} 1
`), "consistency_audit_runs_total", "consistency_audit_last_success_timestamp_seconds"))
	require.Equal(t, 1.0, violations(t, reg, "payment_mismatch"))
	require.Equal(t, 1.0, violations(t, reg, "money_unbalanced"))
	require.Equal(t, 0.0, violations(t, reg, "stock_negative"), "every kind is exported, zero when it holds")

	// A failed audit counts as an error and keeps the last success's gauges.
	m.Observe(nil, errors.New("unavailable"), time.Second, now.Add(time.Minute))
	require.Equal(t, 1.0, violations(t, reg, "payment_mismatch"))
	m.Observe(audit.Check(settled(), time.Minute), nil, time.Second, now.Add(2*time.Minute))
	require.Equal(t, 0.0, violations(t, reg, "payment_mismatch"))
	n, err := testutil.GatherAndCount(reg, "consistency_violations")
	require.NoError(t, err)
	require.Len(t, audit.Kinds, n)
}

// violations is the value of consistency_violations{kind}.
func violations(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			if mf.GetName() == "consistency_violations" && metric.GetLabel()[0].GetValue() == kind {
				return metric.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no consistency_violations{kind=%q}", kind)
	return 0
}

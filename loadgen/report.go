package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/jedib0t/go-pretty/v6/table"

	"github.com/goodgo/goodgo/loadgen/generator"
)

// writeJSON writes the summary as indented JSON.
func writeJSON(w io.Writer, s generator.Summary) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// writeTable writes the summary as three tables (the run, latencies,
// outcomes by kind) and the errors by code.
func writeTable(w io.Writer, s generator.Summary) error {
	var b strings.Builder
	run := newTable("run")
	status := "finished"
	if s.Interrupted {
		status = "interrupted"
	}
	run.AppendRows([]table.Row{
		{"mode", s.Mode},
		{"mix", s.Mix},
		{"elapsed", s.Elapsed.String() + " (" + status + ")"},
		{"orders", fmt.Sprintf("%d started, %d placed, %d place failed", s.Attempted, s.Placed, s.PlaceFailed)},
		{"terminal", fmt.Sprintf("%d (timed out %d, follow errors %d, abandoned %d)", s.Terminal, s.TimedOut, s.FollowErr, s.Abandoned)},
		{"orders/s", fmt.Sprintf("%.1f placed, %.1f terminal", s.OrdersPerSec, s.TerminalPerSec)},
		{"unexpected outcomes", s.Unexpected},
		{"client retries (same key)", fmt.Sprintf("%d sent: %d same order, %d different, %d failed",
			s.Retries.Sent, s.Retries.SameOrder, s.Retries.Different, s.Retries.Failed)},
		{"rate limited (waited)", s.Throttled},
		{"Aborted/Unavailable retried", s.ClientRetries},
	})
	b.WriteString(run.Render() + "\n\n")

	lat := newTable("latency")
	lat.AppendHeader(table.Row{"", "count", "p50", "p95", "p99", "max", "mean"})
	for _, r := range []struct {
		name string
		l    generator.Latency
	}{
		{"saga completion (create → terminal)", s.Saga},
		{"observed (PlaceOrder sent → terminal seen)", s.Observed},
		{"PlaceOrder", s.Place},
	} {
		lat.AppendRow(table.Row{r.name, r.l.Count, r.l.P50, r.l.P95, r.l.P99, r.l.Max, r.l.Mean})
	}
	b.WriteString(lat.Render() + "\n\n")

	// The saga states are known only with -orchestrator-addr.
	withSagas := slices.ContainsFunc(s.Kinds, func(k generator.KindSummary) bool { return len(k.SagaStates) > 0 })
	kinds := newTable("outcomes by kind")
	header := table.Row{"kind", "expected", "started", "placed", "confirmed", "cancelled",
		"timed out", "errors", "abandoned", "unexpected", "saga p50 / p95 / p99"}
	if withSagas {
		header = append(header, "saga states")
	}
	kinds.AppendHeader(header)
	for _, k := range s.Kinds {
		row := table.Row{k.Kind, strings.TrimPrefix(k.Expected, "ORDER_STATUS_"), k.Attempted, k.Placed,
			k.Confirmed, k.Cancelled, k.TimedOut, k.PlaceFailed + k.FollowErr, k.Abandoned, k.Unexpected,
			fmt.Sprintf("%v / %v / %v", k.Saga.P50, k.Saga.P95, k.Saga.P99)}
		if withSagas {
			row = append(row, counts(k.SagaStates))
		}
		kinds.AppendRow(row)
	}
	b.WriteString(kinds.Render() + "\n")

	for _, k := range s.Kinds {
		if len(k.CancelReasons) > 0 {
			fmt.Fprintf(&b, "\ncancelled %s: %s", k.Kind, counts(k.CancelReasons))
		}
	}
	b.WriteString("\n")
	if len(s.Errors) > 0 {
		b.WriteString("\nerrors: " + counts(s.Errors) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func newTable(title string) table.Writer {
	t := table.NewWriter()
	t.SetStyle(table.StyleLight)
	t.SetTitle(title)
	return t
}

// counts is "a 3, b 1", sorted by name.
func counts(m map[string]int) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func bench(metrics map[string]float64) *Benchmark {
	b := &Benchmark{Name: "BenchmarkX", Metrics: map[string]Summary{}}
	for u, v := range metrics {
		b.Units = append(b.Units, u)
		b.Metrics[u] = Summary{Median: v, Min: v, Max: v, Runs: 1}
	}
	return b
}

func TestVerdict(t *testing.T) {
	t.Parallel()
	seed := &Seed{Pattern: "P", MaxLatencyMs: 100, MinThroughput: 1000}
	row := Row{Throughput: "ops/s", CheckThroughput: true, P50: "p50_ms", P99: "p99_ms"}
	tests := []struct {
		name string
		seed *Seed
		row  Row
		b    *Benchmark
		want string
	}{
		{"both meet", seed, row, bench(map[string]float64{"ops/s": 1500, "p50_ms": 5, "p99_ms": 90}), "meets (throughput, p99)"},
		{"bounds are inclusive", seed, row, bench(map[string]float64{"ops/s": 1000, "p99_ms": 100}), "meets (throughput, p99)"},
		{"throughput below", seed, row, bench(map[string]float64{"ops/s": 999, "p99_ms": 90}), "below seed (throughput)"},
		{"p99 above", seed, row, bench(map[string]float64{"ops/s": 5000, "p50_ms": 5, "p99_ms": 101}), "below seed (p99)"},
		{"both short", seed, row, bench(map[string]float64{"ops/s": 10, "p99_ms": 900}), "below seed (throughput, p99)"},
		{"p50 when there is no p99", seed, row, bench(map[string]float64{"ops/s": 5000, "p50_ms": 150}), "below seed (p50)"},
		{"throughput only", seed, row, bench(map[string]float64{"ops/s": 5000}), "meets (throughput)"},
		{"throughput not compared", seed, Row{Throughput: "ops/s", P99: "p99_ms"},
			bench(map[string]float64{"ops/s": 1, "p99_ms": 3}), "meets (p99)"},
		{"mean from ns/op for a serial benchmark", seed, Row{Throughput: "ops/s", MeanLatency: true},
			bench(map[string]float64{"ops/s": 1, "ns/op": 150e6}), "below seed (mean)"},
		{"ns/op is not a latency otherwise", seed, Row{Throughput: "ops/s"},
			bench(map[string]float64{"ops/s": 1, "ns/op": 150e6}), "not comparable"},
		{"seed without throughput (Varies)", &Seed{MaxLatencyMs: 1000}, row,
			bench(map[string]float64{"ops/s": 1, "p99_ms": 20}), "meets (p99)"},
		{"no seed row", nil, row, bench(map[string]float64{"ops/s": 1}), "no seed figure"},
		{"metric missing", seed, row, bench(map[string]float64{"other/s": 1}), "not comparable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Verdict(tc.seed, tc.row, tc.b); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFmtNum(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{
		0: "0.00", 0.0405: "0.0405", 0.338: "0.338", 1: "1.00", 9.75: "9.75", 15.3: "15.3", 99.94: "99.9",
		254: "254", 999.4: "999", 999.6: "1,000", 54120: "54,120", 1936319533: "1,936,319,533", -12345: "-12,345",
	} {
		if got := fmtNum(in); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", in, got, want)
		}
	}
}

// TestTables guards the report's wiring: every row names a seed row and a
// suite that exist, every seed row has a line, every suite feeds a row.
func TestTables(t *testing.T) {
	t.Parallel()
	ids := map[string]bool{}
	for _, s := range suites {
		if ids[s.ID] {
			t.Errorf("suite %s twice", s.ID)
		}
		ids[s.ID] = true
		if s.Dir == "" || s.Pkg == "" || s.Bench == "" || s.Benchtime == "" || s.Timeout == "" {
			t.Errorf("suite %s incomplete: %+v", s.ID, s)
		}
		if _, err := time.ParseDuration(s.Timeout); err != nil {
			t.Errorf("suite %s: timeout: %v", s.ID, err)
		}
	}
	used, seen := map[string]bool{}, map[string]bool{}
	for _, r := range rows {
		if r.Seed != "" && seedFor(r.Seed) == nil {
			t.Errorf("row %s: no seed row %q", r.Bench, r.Seed)
		}
		seen[r.Seed] = true
		if r.Suite != "" {
			if !ids[r.Suite] {
				t.Errorf("row %s: no suite %q", r.Bench, r.Suite)
			}
			if r.Bench == "" || r.Throughput == "" {
				t.Errorf("row in suite %s incomplete: %+v", r.Suite, r)
			}
			used[r.Suite] = true
		}
	}
	for _, s := range seeds {
		if !seen[s.Pattern] {
			t.Errorf("seed row %q has no line in the report", s.Pattern)
		}
	}
	for id := range ids {
		if !used[id] {
			t.Errorf("suite %s feeds no row", id)
		}
	}
}

func TestParseOverrides(t *testing.T) {
	t.Parallel()
	got, err := parseOverrides(" e2e=50x, saga=3000x ,")
	if err != nil || len(got) != 2 || got["e2e"] != "50x" || got["saga"] != "3000x" {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"e2e", "=5x", "e2e=", "nosuch=1x"} {
		if _, err := parseOverrides(bad); err == nil {
			t.Errorf("parseOverrides(%q): no error", bad)
		}
	}
}

// TestRender renders a recorded run (run.json and raw output, as a real
// run leaves them) and checks the table and the document.
func TestRender(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	out := filepath.Join(root, "bin", "bench")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "docs"), 0o755); err != nil {
		t.Fatal(err)
	}
	idem := suites[0]
	if idem.ID != "idempotency" {
		t.Fatalf("suites[0] is %s", idem.ID)
	}
	rep := Report{
		Machine: Machine{CPUs: 2, GOMAXPROCS: 2, Model: "Test CPU", GoVersion: "go1.26.8 linux amd64", Commit: "abc1234",
			Start: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), Seconds: 61, LoadStart: "1.00 2.00 3.00", LoadEnd: "4.00 5.00 6.00", Count: 3},
		Suites: []SuiteRun{
			{Suite: idem, Command: "cd platform && go test …", Status: statusOK, Raw: "bin/bench/idempotency.txt", Seconds: 20},
			{Suite: suites[len(suites)-1], Command: "cd e2e && go test …", Status: statusNotRun, Reason: "BenchmarkOrderSaga does not exist yet"},
		},
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, reportFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	raw := "BenchmarkCheck/claim_complete-2\t100\t10 ns/op\t40000 checks/s\n" +
		"BenchmarkCheck/claim_complete-2\t100\t10 ns/op\t60000 checks/s\n" +
		"BenchmarkCheck/claim_complete-2\t100\t10 ns/op\t55000 checks/s\n" +
		"BenchmarkCheck/replay-2\t100\t10 ns/op\t20000 checks/s\n"
	if err := os.WriteFile(filepath.Join(out, "idempotency.txt"), []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	doc := filepath.Join(root, "docs", "benchmarks.md")
	human := "# Benchmarks\n\nA note.\n\n" + beginMarker + "\nold\n" + endMarker + "\n\nMore notes.\n"
	if err := os.WriteFile(doc, []byte(human), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	getenv := func(string) string { return "" }
	if err := run(context.Background(), []string{"-root", root, "-render"}, getenv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{
		"2 CPUs (GOMAXPROCS 2), Test CPU", "load average 1.00 2.00 3.00 at start, 4.00 5.00 6.00 at end", "-count 3",
		"55,000 checks/s", "meets (throughput)", // median of 40k, 60k, 55k against 50,000
		"20,000 checks/s", "below seed (throughput)",
		"not run: BenchmarkOrderSaga does not exist yet",
		"not run (not selected)",
		"cd platform && go test …",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("text report lacks %q:\n%s", want, text)
		}
	}
	got, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	md := string(got)
	if !strings.HasPrefix(md, "# Benchmarks\n\nA note.\n\n"+beginMarker+"\n") || !strings.HasSuffix(md, endMarker+"\n\nMore notes.\n") {
		t.Errorf("text outside the markers changed:\n%s", md)
	}
	if strings.Contains(md, "\nold\n") {
		t.Errorf("old content between the markers kept:\n%s", md)
	}
	if !strings.Contains(md, "| Idempotency Check | < 10ms | 50,000 checks/s | `BenchmarkCheck/claim_complete` (platform/idempotency)") {
		t.Errorf("markdown table row missing:\n%s", md)
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	// -list runs nothing; -only with a pattern that matches nothing fails
	// before anything runs.
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string {
		if k == "BENCH_COUNT" {
			return "3"
		}
		return ""
	}
	if err := run(context.Background(), []string{"-list", "-only", "^saga$"}, getenv, nil, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if got := stdout.String(); !strings.Contains(got, "-count 3") || !strings.Contains(got, "./saga/") || strings.Contains(got, "idempotency") {
		t.Errorf("-list -only ^saga$ with BENCH_COUNT=3:\n%s", got)
	}
	if err := run(context.Background(), []string{"-only", "nomatch"}, getenv, nil, &stdout, &stderr); err == nil {
		t.Error("-only nomatch: no error")
	}
	bad := func(string) string { return "zero" }
	if err := run(context.Background(), []string{"-list"}, bad, nil, &stdout, &stderr); err == nil {
		t.Error("BENCH_COUNT=zero: no error")
	}
}

// TestRenderSubsetLeavesDoc: the last run was of a subset (-only), so
// rendering it must not replace a full run's table in the document.
func TestRenderSubsetLeavesDoc(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	out := filepath.Join(root, "bin", "bench")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(Report{Only: "^saga$", Machine: Machine{GOMAXPROCS: 2}, Suites: []SuiteRun{
		{Suite: Suite{ID: "saga"}, Status: statusOK, Raw: "bin/bench/saga.txt"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, reportFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	raw := "BenchmarkSagaThroughput/inflight=16-2\t2000\t16 p50_ms\t48 p99_ms\t894 sagas/s\n"
	if err := os.WriteFile(filepath.Join(out, "saga.txt"), []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(context.Background(), []string{"-root", root, "-render"}, func(string) string { return "" }, nil, &stdout, &stderr); err != nil {
		t.Fatalf("run: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "894 sagas/s") || !strings.Contains(stdout.String(), "not updated") {
		t.Errorf("report:\n%s", stdout.String())
	}
	if _, err := os.Stat(filepath.Join(root, "docs", "benchmarks.md")); !os.IsNotExist(err) {
		t.Errorf("the document was written after a subset run: %v", err)
	}
}

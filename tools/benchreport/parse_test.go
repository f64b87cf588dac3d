package main

import (
	"errors"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	t.Parallel()
	longLog := `{"level":"INFO","msg":"` + strings.Repeat("x", 200_000) + `"}`
	tests := []struct {
		name       string
		procs      int
		in         string
		want       []Result
		wantFailed []Failure
	}{
		{
			name:  "standard line with custom metrics and headers",
			procs: 2,
			in: "goos: linux\ngoarch: amd64\npkg: example.com/x\ncpu: Intel(R) Xeon(R) Processor\n" +
				"BenchmarkCheck/claim_complete-2  \t   18039\t     66307 ns/op\t     15081 checks/s\t    3696 B/op\t      65 allocs/op\n" +
				"PASS\nok  \texample.com/x\t6.1s\n",
			want: []Result{{Name: "BenchmarkCheck/claim_complete", Iterations: 18039, Metrics: []Metric{
				{"ns/op", 66307}, {"checks/s", 15081}, {"B/op", 3696}, {"allocs/op", 65}}}},
		},
		{
			name:  "fractional values and no ns/op (ReportMetric(0, ns/op))",
			procs: 2,
			in:    "BenchmarkSagaThroughput/inflight=16-2 \t 1000\t 15.30 p50_ms\t 80.01 p99_ms\t 913.7 sagas/s\n",
			want: []Result{{Name: "BenchmarkSagaThroughput/inflight=16", Iterations: 1000, Metrics: []Metric{
				{"p50_ms", 15.3}, {"p99_ms", 80.01}, {"sagas/s", 913.7}}}},
		},
		{
			name:  "only the GOMAXPROCS suffix is stripped",
			procs: 2,
			in:    "BenchmarkRefundPayment/contended-4-2\t 100\t 477014 ns/op\n",
			want:  []Result{{Name: "BenchmarkRefundPayment/contended-4", Iterations: 100, Metrics: []Metric{{"ns/op", 477014}}}},
		},
		{
			name:  "with GOMAXPROCS 1 there is no suffix to strip",
			procs: 1,
			in:    "BenchmarkRefundPayment/contended-4\t 100\t 477014 ns/op\n",
			want:  []Result{{Name: "BenchmarkRefundPayment/contended-4", Iterations: 100, Metrics: []Metric{{"ns/op", 477014}}}},
		},
		{
			name:  "another suffix stays",
			procs: 8,
			in:    "BenchmarkX-2\t 1\t 5 ns/op\n",
			want:  []Result{{Name: "BenchmarkX-2", Iterations: 1, Metrics: []Metric{{"ns/op", 5}}}},
		},
		{
			name:  "log output between the name and its figures",
			procs: 2,
			in: "BenchmarkDrain/batch=500/workers=4-2 \t" + `{"level":"INFO","msg":"lane claimed"}` + "\n" +
				`{"level":"INFO","msg":"another"}` + "\n" + longLog + "\n" +
				"       1\t1936319533 ns/op\t     54120 events/s\n",
			want: []Result{{Name: "BenchmarkDrain/batch=500/workers=4", Iterations: 1, Metrics: []Metric{
				{"ns/op", 1936319533}, {"events/s", 54120}}}},
		},
		{
			name:  "every -count run, CRLF line ends",
			procs: 2,
			in:    "BenchmarkA-2\t10\t1.5 x/s\r\nBenchmarkA-2\t12\t2.5 x/s\r\nBenchmarkA-2\t11\t3.5 x/s\r\n",
			want: []Result{
				{Name: "BenchmarkA", Iterations: 10, Metrics: []Metric{{"x/s", 1.5}}},
				{Name: "BenchmarkA", Iterations: 12, Metrics: []Metric{{"x/s", 2.5}}},
				{Name: "BenchmarkA", Iterations: 11, Metrics: []Metric{{"x/s", 3.5}}},
			},
		},
		{
			name:  "failures with their messages; the name printed before a failure gets no figures",
			procs: 2,
			in: "BenchmarkReserveStock/low_contention-2 \t 1514\t 790812 ns/op\t 34.74 p99-ms\n" +
				"--- FAIL: BenchmarkAdjustStock/low_contention\n" +
				"    bench_test.go:136: rpc error: code = PermissionDenied desc = caller may not adjust stock\n" +
				"BenchmarkB-2   \t--- FAIL: BenchmarkB-2\n" +
				"    b_test.go:9: boom\n" +
				"       5\t 100 ns/op\n" + // not B's: B failed
				"--- FAIL: BenchmarkAdjustStock\n" +
				"FAIL\nexit status 1\n",
			want: []Result{{Name: "BenchmarkReserveStock/low_contention", Iterations: 1514, Metrics: []Metric{
				{"ns/op", 790812}, {"p99-ms", 34.74}}}},
			wantFailed: []Failure{
				{"BenchmarkAdjustStock/low_contention", "bench_test.go:136: rpc error: code = PermissionDenied desc = caller may not adjust stock"},
				{"BenchmarkB", "b_test.go:9: boom"},
				{"BenchmarkAdjustStock", ""},
			},
		},
		{
			name:  "a later -count run that fails is reported twice, counted once",
			procs: 2,
			in: "BenchmarkOrderSaga-2 \t 200\t 44.18 sagas/s\n" +
				"BenchmarkOrderSaga-2   \t--- FAIL: BenchmarkOrderSaga\n" +
				"    bench_test.go:382: \n" +
				"        \tError Trace:\t/work/main/e2e/bench_test.go:382\n" +
				"        \t            \t/work/main/e2e/bench_test.go:60\n" +
				"        \tError:      \tReceived unexpected error:\n" +
				"        \t            \tFATAL: sorry, too many clients already (SQLSTATE 53300)\n" +
				"        \tTest:       \tBenchmarkOrderSaga\n" +
				`        {"level":"WARN","msg":"not ready"}` + "\n" +
				"--- FAIL: BenchmarkOrderSaga-2\n" +
				"    bench_test.go:382: \n" +
				"BenchmarkOrderSaga-2   \t--- FAIL: BenchmarkOrderSaga\n" +
				"    bench_test.go:114: boom\n" +
				"--- FAIL: BenchmarkOrderSaga-2\n" +
				"    bench_test.go:114: boom\n" +
				"BenchmarkOrderSaga-2 \t 200\t 47.2 sagas/s\n" +
				"PASS\nok  \tgithub.com/goodgo/goodgo/e2e\t132.827s\n",
			want: []Result{
				{Name: "BenchmarkOrderSaga", Iterations: 200, Metrics: []Metric{{"sagas/s", 44.18}}},
				{Name: "BenchmarkOrderSaga", Iterations: 200, Metrics: []Metric{{"sagas/s", 47.2}}},
			},
			wantFailed: []Failure{
				{"BenchmarkOrderSaga", "Received unexpected error: FATAL: sorry, too many clients already (SQLSTATE 53300)"},
				{"BenchmarkOrderSaga", "bench_test.go:114: boom"},
			},
		},
		{
			name:  "the same with GOMAXPROCS 1: both reports read alike",
			procs: 1,
			in: "BenchmarkA   \t--- FAIL: BenchmarkA\n    a_test.go:1: x\n--- FAIL: BenchmarkA\n    a_test.go:1: x\n" +
				"BenchmarkA   \t--- FAIL: BenchmarkA\n    a_test.go:1: y\n--- FAIL: BenchmarkA\n    a_test.go:1: y\n",
			wantFailed: []Failure{{"BenchmarkA", "a_test.go:1: x"}, {"BenchmarkA", "a_test.go:1: y"}},
		},
		{
			name:       "a testify report without an Error line keeps its first line",
			procs:      2,
			in:         "--- FAIL: BenchmarkA\n        \tError Trace:\tx_test.go:3\nFAIL\n",
			wantFailed: []Failure{{"BenchmarkA", "Error Trace:\tx_test.go:3"}},
		},
		{
			name:  "lines that only look like results are ignored",
			procs: 2,
			in: "BenchmarkA-2\n" +
				"3 4 5\n" + // units must not be numbers
				"12 apples\n" + // too short
				"x 1 ns/op\n" + // no iteration count
				"-1 1 ns/op\n" + // negative count
				"7 1 ns/op 2\n" + // unpaired value
				"  9\t 2 ns/op\n" +
				"Benchmarking is fun\n",
			want: []Result{{Name: "BenchmarkA", Iterations: 9, Metrics: []Metric{{"ns/op", 2}}}},
		},
		{
			name:  "no trailing newline",
			procs: 2,
			in:    "BenchmarkA-2\t3\t4 ns/op",
			want:  []Result{{Name: "BenchmarkA", Iterations: 3, Metrics: []Metric{{"ns/op", 4}}}},
		},
		{
			name:  "empty",
			procs: 2,
			in:    "",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(strings.NewReader(tc.in), tc.procs)
			if err != nil {
				t.Fatal(err)
			}
			if !equalResults(got.Results, tc.want) {
				t.Errorf("results:\n got %+v\nwant %+v", got.Results, tc.want)
			}
			if !equalFailures(got.Failed, tc.wantFailed) {
				t.Errorf("failures:\n got %+v\nwant %+v", got.Failed, tc.wantFailed)
			}
		})
	}
}

func equalResults(a, b []Result) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].Iterations != b[i].Iterations || len(a[i].Metrics) != len(b[i].Metrics) {
			return false
		}
		for j := range a[i].Metrics {
			if a[i].Metrics[j] != b[i].Metrics[j] {
				return false
			}
		}
	}
	return true
}

func equalFailures(a, b []Failure) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestJudge(t *testing.T) {
	t.Parallel()
	ok := Output{Results: []Result{{Name: "BenchmarkA"}}}
	failedLater := Output{Results: ok.Results, Failed: []Failure{{"BenchmarkA", "boom"}}}
	tests := []struct {
		name       string
		err        error
		out        Output
		raw        string
		wantStatus string
		wantReason string
	}{
		{"passed with results", nil, ok, "", statusOK, ""},
		{"go test passed but a later run failed", nil, failedLater, "", statusFailed, "1 failures; first BenchmarkA: boom"},
		{"build failure", errors.New("exit status 1"), Output{},
			"# example.com/x [example.com/x.test]\n./a_test.go:3:1: undefined: foo\nFAIL\texample.com/x [build failed]\n",
			statusFailed, "./a_test.go:3:1: undefined: foo"},
		{"timeout", errors.New("exit status 2"), Output{Results: ok.Results},
			"BenchmarkA-2 \t1\t5 ns/op\nFAIL\texample.com/x\npanic: test timed out after 5m0s\n", statusFailed, "panic: test timed out after 5m0s"},
		{"FAIL line only", errors.New("exit status 1"), Output{}, "FAIL\texample.com/x\t0.1s\n", statusFailed, "FAIL\texample.com/x\t0.1s"},
		{"go test failed, nothing recognisable", errors.New("exit status 2"), Output{}, "weird\n", statusFailed, "exit status 2"},
		{"passed without results", nil, Output{}, "PASS\n", statusFailed, "no benchmark results: -bench matched nothing?"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			status, reason := judge(tc.err, tc.out, []byte(tc.raw))
			if status != tc.wantStatus || reason != tc.wantReason {
				t.Errorf("got %q, %q; want %q, %q", status, reason, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

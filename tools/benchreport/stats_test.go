package main

import (
	"math"
	"slices"
	"testing"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"one", []float64{7}, 7},
		{"odd, unsorted", []float64{5, 1, 9, 3, 7}, 5},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"two", []float64{10, 20}, 15},
		{"outliers do not move it", []float64{1000, 1, 1, 1, -1000}, 1},
		{"equal values", []float64{3, 3, 3}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			in := slices.Clone(tc.in)
			if got := Median(in); got != tc.want {
				t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			if !slices.Equal(in, tc.in) {
				t.Errorf("Median sorted its argument: %v", in)
			}
		})
	}
	if got := Median(nil); !math.IsNaN(got) {
		t.Errorf("Median(nil) = %v, want NaN", got)
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	res := []Result{
		{Name: "BenchmarkB", Metrics: []Metric{{"ns/op", 30}, {"x/s", 100}}},
		{Name: "BenchmarkA", Metrics: []Metric{{"ns/op", 5}}},
		{Name: "BenchmarkB", Metrics: []Metric{{"ns/op", 10}, {"x/s", 300}, {"p99_ms", 4}}},
		{Name: "BenchmarkB", Metrics: []Metric{{"ns/op", 20}, {"x/s", 200}}},
		{Name: "BenchmarkB", Metrics: []Metric{{"ns/op", 40}, {"x/s", 150}}},
	}
	got := Summarize(res)
	if len(got) != 2 || got[0].Name != "BenchmarkB" || got[1].Name != "BenchmarkA" {
		t.Fatalf("benchmarks not in order of appearance: %+v", got)
	}
	b := got[0]
	if !slices.Equal(b.Units, []string{"ns/op", "x/s", "p99_ms"}) {
		t.Errorf("units = %v", b.Units)
	}
	for unit, want := range map[string]Summary{
		"ns/op":  {Median: 25, Min: 10, Max: 40, Runs: 4},
		"x/s":    {Median: 175, Min: 100, Max: 300, Runs: 4},
		"p99_ms": {Median: 4, Min: 4, Max: 4, Runs: 1},
	} {
		if b.Metrics[unit] != want {
			t.Errorf("%s: got %+v, want %+v", unit, b.Metrics[unit], want)
		}
	}
	if a := got[1].Metrics["ns/op"]; a != (Summary{Median: 5, Min: 5, Max: 5, Runs: 1}) {
		t.Errorf("BenchmarkA ns/op: %+v", a)
	}
	if got := Summarize(nil); len(got) != 0 {
		t.Errorf("Summarize(nil) = %v", got)
	}
}

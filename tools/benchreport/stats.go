package main

import (
	"math"
	"slices"
)

// Summary describes one metric of one benchmark across its -count runs.
type Summary struct {
	Median, Min, Max float64
	// Runs is how many runs reported the metric.
	Runs int
}

// Median returns the median of vs (the mean of the two middle values when
// there is an even number of them), or NaN for none. vs is not modified.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// Benchmark is every metric of one benchmark, summarised over its runs.
type Benchmark struct {
	Name string
	// Units lists the metrics in the order the output first gave them.
	Units   []string
	Metrics map[string]Summary
}

// Summarize groups results by benchmark name (in order of first
// appearance) and summarises each metric across the runs.
func Summarize(results []Result) []Benchmark {
	var (
		order  []string
		values = map[string]map[string][]float64{}
		units  = map[string][]string{}
	)
	for _, r := range results {
		byUnit, seen := values[r.Name]
		if !seen {
			byUnit = map[string][]float64{}
			values[r.Name] = byUnit
			order = append(order, r.Name)
		}
		for _, m := range r.Metrics {
			if _, ok := byUnit[m.Unit]; !ok {
				units[r.Name] = append(units[r.Name], m.Unit)
			}
			byUnit[m.Unit] = append(byUnit[m.Unit], m.Value)
		}
	}
	out := make([]Benchmark, 0, len(order))
	for _, name := range order {
		b := Benchmark{Name: name, Units: units[name], Metrics: map[string]Summary{}}
		for unit, vs := range values[name] {
			b.Metrics[unit] = Summary{Median: Median(vs), Min: slices.Min(vs), Max: slices.Max(vs), Runs: len(vs)}
		}
		out = append(out, b)
	}
	return out
}

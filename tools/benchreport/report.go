package main

import (
	"fmt"
	"io"
	"math"
	"path"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Suite statuses.
const (
	statusOK     = "ok"
	statusFailed = "failed"
	statusNotRun = "not run"
)

// SuiteRun is what became of one suite in a run.
type SuiteRun struct {
	Suite Suite
	// Command is the exact command, runnable from the repository root.
	Command string
	Status  string
	// Reason explains a failed or not-run status.
	Reason  string
	Seconds float64
	// Exit is the error of the go command, "" if it succeeded.
	Exit string
	// Raw is the raw output file, relative to the repository root.
	Raw        string
	Benchmarks []Benchmark `json:"-"` // parsed again from Raw
	Failed     []Failure   `json:"-"`
}

// Machine describes where and when the benchmarks ran.
type Machine struct {
	CPUs       int
	GOMAXPROCS int
	Model      string
	MemGiB     float64
	GoVersion  string
	Commit     string
	Dirty      bool
	Start      time.Time
	Seconds    float64
	LoadStart  string
	LoadEnd    string
	Count      int
}

// Report is one run of `make bench`: the machine and every suite.
type Report struct {
	Machine Machine
	// Only is the -only pattern of a run of a subset, "" for a full run.
	Only   string `json:",omitempty"`
	Suites []SuiteRun
}

func (r *Report) suite(id string) *SuiteRun {
	for i := range r.Suites {
		if r.Suites[i].Suite.ID == id {
			return &r.Suites[i]
		}
	}
	return nil
}

// failure returns the first failure of the benchmark named name, or nil.
func (s *SuiteRun) failure(name string) *Failure {
	for i := range s.Failed {
		if s.Failed[i].Name == name {
			return &s.Failed[i]
		}
	}
	return nil
}

// failures counts the failed runs of the benchmark named name.
func (s *SuiteRun) failures(name string) int {
	n := 0
	for _, f := range s.Failed {
		if f.Name == name {
			n++
		}
	}
	return n
}

func seedFor(pattern string) *Seed {
	for i := range seeds {
		if seeds[i].Pattern == pattern {
			return &seeds[i]
		}
	}
	return nil
}

func (b *Benchmark) median(unit string) (float64, bool) {
	if b == nil || unit == "" {
		return 0, false
	}
	s, ok := b.Metrics[unit]
	return s.Median, ok
}

// runs is how many runs gave results.
func (b *Benchmark) runs() int {
	n := 0
	for _, m := range b.Metrics {
		n = max(n, m.Runs)
	}
	return n
}

// latency returns the figure a row's latency is judged by: the p99 if the
// benchmark reports one, else the p50, else (for a serial benchmark) the
// mean from ns/op, in milliseconds, with its label.
func latency(r Row, b *Benchmark) (ms float64, label string, ok bool) {
	if v, ok := b.median(r.P99); ok {
		return v, "p99", true
	}
	if v, ok := b.median(r.P50); ok {
		return v, "p50", true
	}
	if r.MeanLatency {
		if v, ok := b.median("ns/op"); ok {
			return v / 1e6, "mean", true
		}
	}
	return 0, "", false
}

// Verdict holds a benchmark's medians to its seed row: the throughput is
// compared with the low end of the seed's range (if the row's throughput
// is comparable), the latency (see latency) with the high end. It names
// the figures it compared; "below seed" names those that fell short.
func Verdict(s *Seed, r Row, b *Benchmark) string {
	if s == nil {
		return "no seed figure"
	}
	var compared, below []string
	if r.CheckThroughput && s.MinThroughput > 0 {
		if v, ok := b.median(r.Throughput); ok {
			compared = append(compared, "throughput")
			if v < s.MinThroughput {
				below = append(below, "throughput")
			}
		}
	}
	if s.MaxLatencyMs > 0 {
		if v, label, ok := latency(r, b); ok {
			compared = append(compared, label)
			if v > s.MaxLatencyMs {
				below = append(below, label)
			}
		}
	}
	switch {
	case len(compared) == 0:
		return "not comparable"
	case len(below) > 0:
		return "below seed (" + strings.Join(below, ", ") + ")"
	default:
		return "meets (" + strings.Join(compared, ", ") + ")"
	}
}

// line is one rendered row of the main table.
type line struct {
	pattern, seedLatency, seedThroughput string
	measured, throughput, latency        string
	verdict, other                       string
}

func (r *Report) lines() []line {
	var out []line
	for _, row := range rows {
		l := line{pattern: "(no seed row)", seedLatency: "—", seedThroughput: "—", throughput: "—", latency: "—", other: ""}
		s := seedFor(row.Seed)
		if s != nil {
			l.pattern, l.seedLatency, l.seedThroughput = s.Pattern, s.Latency, s.Throughput
		}
		if row.Suite == "" {
			l.measured = "no benchmark measures this yet"
			l.verdict = "not measured"
			out = append(out, l)
			continue
		}
		sr := r.suite(row.Suite)
		var pkg string
		for _, su := range suites {
			if su.ID == row.Suite {
				pkg = path.Join(su.Dir, su.Pkg)
			}
		}
		l.measured = fmt.Sprintf("%s (%s): %s", row.Bench, pkg, row.What)
		var b *Benchmark
		if sr != nil {
			for i := range sr.Benchmarks {
				if sr.Benchmarks[i].Name == row.Bench {
					b = &sr.Benchmarks[i]
				}
			}
		}
		switch {
		case sr == nil:
			l.verdict = "not run (not selected)"
		case sr.Status == statusNotRun:
			l.verdict = "not run: " + sr.Reason
		case b == nil && sr.failure(row.Bench) != nil:
			l.verdict = "failed: " + cut(sr.failure(row.Bench).Message, 100)
		case b == nil && sr.Status == statusFailed:
			l.verdict = "failed: " + sr.Reason
		case b == nil:
			l.verdict = "no result"
		}
		if b == nil {
			out = append(out, l)
			continue
		}
		if v, ok := b.median(row.Throughput); ok {
			l.throughput = fmtNum(v) + " " + row.Throughput
			if !row.CheckThroughput && s != nil {
				l.throughput += " (not compared)"
			}
		}
		p50, ok50 := b.median(row.P50)
		p99, ok99 := b.median(row.P99)
		switch {
		case ok50 && ok99:
			l.latency = fmt.Sprintf("%s / %s ms", fmtNum(p50), fmtNum(p99))
		case ok99:
			l.latency = fmt.Sprintf("— / %s ms", fmtNum(p99))
		case ok50:
			l.latency = fmt.Sprintf("%s / — ms", fmtNum(p50))
		case row.MeanLatency:
			if v, ok := b.median("ns/op"); ok {
				l.latency = fmt.Sprintf("mean %s ms/op", fmtNum(v/1e6))
			}
		}
		var other []string
		for _, u := range row.Extra {
			if v, ok := b.median(u); ok {
				other = append(other, fmtNum(v)+" "+u)
			}
		}
		l.other = strings.Join(other, ", ")
		l.verdict = Verdict(s, row, b)
		if n := sr.failures(row.Bench); n > 0 {
			// Some of the -count runs failed: the medians are of the rest.
			l.verdict += fmt.Sprintf("; %d of %d runs failed: %s", n, n+b.runs(), cut(sr.failure(row.Bench).Message, 100))
		}
		out = append(out, l)
	}
	return out
}

// fmtNum formats a figure with about three significant digits and
// thousands separators.
func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "NaN"
	case a >= 999.5:
		s := strconv.FormatInt(int64(math.Round(a)), 10)
		var b strings.Builder
		if v < 0 {
			b.WriteByte('-')
		}
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		return b.String()
	case a >= 99.95:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 9.995:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.9995 || a == 0:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func fmtDuration(seconds float64) string {
	return time.Duration(seconds * float64(time.Second)).Round(time.Second).String()
}

func (m Machine) describe() string {
	dirty := ""
	if m.Dirty {
		dirty = " + uncommitted changes"
	}
	return fmt.Sprintf("%d CPUs (GOMAXPROCS %d), %s, %.0f GiB RAM; %s; commit %s%s; "+
		"load average %s at start, %s at end; started %s; -count %d; took %s",
		m.CPUs, m.GOMAXPROCS, m.Model, m.MemGiB, m.GoVersion, m.Commit, dirty,
		m.LoadStart, m.LoadEnd, m.Start.UTC().Format("2006-01-02 15:04 UTC"), m.Count, fmtDuration(m.Seconds))
}

const verdictRule = "Verdict: the median throughput is compared with the low end of the seed's range, " +
	"the median latency (p99, else p50, else the mean ns/op of a one-at-a-time benchmark) with the high end " +
	"of the seed's; \"meets (…)\" names the figures compared. Throughput is not compared for a fixed offered " +
	"load or a single connection. Medians over the -count runs; the spread is in the details below."

// WriteText prints the report for a terminal.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "Machine: %s\n\n", r.Machine.describe())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEED PATTERN\tSEED LATENCY\tSEED THROUGHPUT\tMEASURED (BENCHMARK)\tMEDIAN THROUGHPUT\tMEDIAN P50 / P99\tVERDICT\tOTHER MEDIANS")
	for _, l := range r.lines() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.pattern, l.seedLatency, l.seedThroughput,
			l.measured, l.throughput, l.latency, l.verdict, l.other)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n%s\n\nSuites:\n", verdictRule)
	for _, s := range r.Suites {
		fmt.Fprintf(w, "  %-15s %-8s %6s  %s%s\n", s.Suite.ID, s.Status, fmtDuration(s.Seconds), s.Raw, reasonSuffix(s))
	}
	fmt.Fprintln(w, "\nCommands (from the repository root):")
	for _, s := range r.Suites {
		fmt.Fprintf(w, "  %s\n", s.Command)
	}
	fmt.Fprintln(w, "\nAll metrics, median [min – max] (runs):")
	r.writeDetails(w, "  ", "")
	return nil
}

func reasonSuffix(s SuiteRun) string {
	if s.Reason == "" {
		return ""
	}
	return " (" + s.Reason + ")"
}

func (r *Report) writeDetails(w io.Writer, indent, code string) {
	for _, s := range r.Suites {
		for _, b := range s.Benchmarks {
			var parts []string
			for _, u := range b.Units {
				m := b.Metrics[u]
				parts = append(parts, fmt.Sprintf("%s %s [%s – %s] (%d)", fmtNum(m.Median), u, fmtNum(m.Min), fmtNum(m.Max), m.Runs))
			}
			fmt.Fprintf(w, "%s%s%s%s: %s\n", indent, code, b.Name, code, strings.Join(parts, "; "))
		}
	}
}

// Markdown returns the report as Markdown, for docs/benchmarks.md.
func (r *Report) Markdown() string {
	var b strings.Builder
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	// Messages quote with backticks and may be cut inside a quote.
	plain := func(s string) string { return esc(strings.ReplaceAll(s, "`", "'")) }
	fmt.Fprintf(&b, "_Generated by `make bench`; edits between the markers are overwritten._\n\n")
	fmt.Fprintf(&b, "**Machine:** %s.\n\n", r.Machine.describe())
	b.WriteString("| Seed pattern | Seed latency | Seed throughput | Measured (benchmark) | Median throughput | Median p50 / p99 | Verdict | Other medians |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	for _, l := range r.lines() {
		measured := l.measured
		if name, rest, ok := strings.Cut(measured, " ("); ok && strings.HasPrefix(name, "Benchmark") {
			measured = "`" + name + "` (" + rest
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", esc(l.pattern), esc(l.seedLatency),
			esc(l.seedThroughput), esc(measured), esc(l.throughput), esc(l.latency), plain(l.verdict), esc(l.other))
	}
	fmt.Fprintf(&b, "\n%s\n\n", verdictRule)
	b.WriteString("| Suite | Status | Time | Raw output |\n|---|---|---|---|\n")
	for _, s := range r.Suites {
		fmt.Fprintf(&b, "| %s | %s | %s | `%s` |\n", s.Suite.ID, plain(s.Status+reasonSuffix(s)), fmtDuration(s.Seconds), s.Raw)
	}
	b.WriteString("\nCommands (from the repository root):\n\n```\n")
	for _, s := range r.Suites {
		b.WriteString(s.Command + "\n")
	}
	b.WriteString("```\n\nAll metrics, median [min – max] (runs):\n\n")
	r.writeDetails(&b, "- ", "`")
	return b.String()
}

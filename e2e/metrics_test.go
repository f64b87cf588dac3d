package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// Where the alert rules and the dashboards live (deploy/), from e2e/.
const (
	rulesFile     = "../deploy/prometheus/rules/goodgo.yml"
	dashboardsDir = "../deploy/grafana/dashboards"
)

// rateInterval stands for Grafana's $__rate_interval when a dashboard
// query is evaluated here: four scrapes of the test's Prometheus and more.
const rateInterval = "10s"

// promQuery is one PromQL expression of a rule or a dashboard. value is
// what must return series on a system under load: a dashboard query
// itself; for an alert, its expression without the final threshold (an
// alert that does not fire returns nothing, by design).
type promQuery struct {
	source string // file and rule or panel
	expr   string
	value  string
}

// ruleQueries reads every rule expression of the rules file.
func ruleQueries(t testing.TB) []promQuery {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &doc))
	var out []promQuery
	for _, g := range doc.Groups {
		for _, r := range g.Rules {
			expr := strings.TrimSpace(r.Expr)
			out = append(out, promQuery{source: filepath.Base(rulesFile) + " " + r.Alert + r.Record, expr: expr, value: withoutThreshold(expr)})
		}
	}
	require.NotEmpty(t, out, "no rule in %s", rulesFile)
	return out
}

// threshold is an alert's final comparison with a number.
var threshold = regexp.MustCompile(`\s*(==|!=|>=|<=|>|<)\s*(bool\s+)?[-+]?[0-9][0-9.eE+-]*\s*$`)

func withoutThreshold(expr string) string { return threshold.ReplaceAllString(expr, "") }

// dashboardQueries reads every target expression of every dashboard, with
// $__rate_interval replaced; any other Grafana variable fails the test,
// since it could not be evaluated here.
func dashboardQueries(t testing.TB) []promQuery {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "no dashboard in %s", dashboardsDir)
	var out []promQuery
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var doc struct {
			Title  string `json:"title"`
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(raw, &doc), f)
		n := 0
		for _, p := range doc.Panels {
			require.NotEmpty(t, p.Targets, "%s: panel %q has no query", f, p.Title)
			for _, tg := range p.Targets {
				expr := strings.ReplaceAll(tg.Expr, "$__rate_interval", rateInterval)
				require.NotContains(t, expr, "$", "%s: panel %q uses a variable this test cannot evaluate: %s", f, p.Title, tg.Expr)
				out = append(out, promQuery{source: filepath.Base(f) + " " + p.Title, expr: expr, value: expr})
				n++
			}
		}
		require.Positive(t, n, "%s has no query", f)
	}
	return out
}

// PromQL words that are not metric names.
var promKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "by": true, "without": true,
	"on": true, "ignoring": true, "group_left": true, "group_right": true, "inf": true, "nan": true,
}

var (
	promStrings   = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promMatchers  = regexp.MustCompile(`\{[^}]*\}`)
	promRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	promGroupings = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promIdents    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// metricNames returns the metric names expr selects: identifiers that are
// not function or aggregation names (followed by "("), keywords, label
// names (inside braces or groupings), durations or numbers.
func metricNames(expr string) []string {
	s := promStrings.ReplaceAllString(expr, `""`)
	s = promMatchers.ReplaceAllString(s, "{}")
	s = promRanges.ReplaceAllString(s, "[]")
	s = promGroupings.ReplaceAllString(s, " ")
	var out []string
	for _, loc := range promIdents.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && strings.ContainsAny(s[loc[0]-1:loc[0]], "0123456789.") {
			continue // the exponent of a number
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") || promKeywords[strings.ToLower(name)] {
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// TestMetricNamesOfQueries holds metricNames to what PromQL selects.
func TestMetricNamesOfQueries(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (saga_type) (rate(saga_timeout_total[5m])) > 0.05`:                                           {"saga_timeout_total"},
		`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b(c)",d=~"e{1}"}[$__rate_interval]))) > 1e3`: {"x_bucket"},
		`a / on () (b or on () vector(0)) == 0 unless c offset 5m`:                                           {"a", "b", "c"},
		`time() - max(consistency_audit_last_success_timestamp_seconds) > 900`:                               {"consistency_audit_last_success_timestamp_seconds"},
		`sum without (instance) (up) and ignoring(job) group_left(x) other:recorded`:                         {"up", "other:recorded"},
	} {
		require.Equal(t, want, metricNames(expr), expr)
	}
	require.Equal(t, "rate(x[5m]) / rate(y[5m])", withoutThreshold("rate(x[5m]) / rate(y[5m]) > 0.1"))
	require.Equal(t, "time() - max(x)", withoutThreshold("time() - max(x) > 900\n"))
}

// exportedNames scrapes addr's /metrics and returns the names of its
// samples: each family's name, and for histograms and summaries the
// _bucket, _sum and _count series.
func exportedNames(addr string) (map[string]bool, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", addr, resp.Status)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 || f[0] != "#" || f[1] != "TYPE" {
			continue
		}
		names[f[2]] = true
		switch f[3] {
		case "histogram":
			names[f[2]+"_bucket"], names[f[2]+"_sum"], names[f[2]+"_count"] = true, true, true
		case "summary":
			names[f[2]+"_sum"], names[f[2]+"_count"] = true, true
		}
	}
	return names, sc.Err()
}

// TestRulesAndDashboardsNameExportedMetrics runs the whole system under a
// trickle of orders with the consistency auditor (goodgoctl audit
// -interval), scrapes every binary's /metrics and the auditor's, and
// requires every metric name that an alert rule (deploy/prometheus/rules)
// or a dashboard (deploy/grafana/dashboards) uses to be exported. One
// outbox event sealed under a key no relay holds makes the relay export
// what only that fault shows (outbox_lanes_held, unknown_key failures).
//
// Where a Prometheus server is installed (/usr/bin/prometheus from the OS
// package; CI installs it), it scrapes the system with the rules loaded:
// every rule must load and evaluate without error, and every dashboard
// query and every rule's measured value (its expression without the
// threshold) must return series.
func TestRulesAndDashboardsNameExportedMetrics(t *testing.T) {
	queries := append(ruleQueries(t), dashboardQueries(t)...)
	used := map[string][]string{} // metric name -> where
	for _, q := range queries {
		names := metricNames(q.expr)
		require.NotEmpty(t, names, "%s: no metric name found in %q", q.source, q.expr)
		for _, n := range names {
			used[n] = append(used[n], q.source)
		}
	}

	e := NewEnv(t, envOptions{race: true})
	auditAddr := e.startAuditor(t)
	e.holdALane(t)

	// A few orders settle before the first scrape, so that the series
	// born with the first saga, payment and projection exist.
	var ids []string
	for i := range 6 {
		card := cardOK
		if i%3 == 2 {
			card = cardDecline
		}
		ids = append(ids, e.MustPlaceOrder(t, items(plentySKUs[i%len(plentySKUs)], 1), card).GetOrderId())
	}
	e.WaitOrders(t, ids, time.Minute)
	stop := e.trickle(t)
	defer stop()

	targets := map[string]string{"auditor": auditAddr}
	for _, s := range Services {
		targets[s] = e.HTTPAddr(s)
	}
	var missing []string
	ok := poll(time.Minute, 250*time.Millisecond, func() bool {
		exported := map[string]bool{}
		for name, addr := range targets {
			names, err := exportedNames(addr)
			require.NoError(t, err, name)
			for n := range names {
				exported[n] = true
			}
		}
		missing = missing[:0]
		for n, where := range used {
			if !exported[n] {
				missing = append(missing, fmt.Sprintf("%s (used by %s)", n, strings.Join(slices.Compact(where), "; ")))
			}
		}
		return len(missing) == 0
	})
	sort.Strings(missing)
	require.True(t, ok, "metrics used by rules or dashboards that no binary exports:\n%s", strings.Join(missing, "\n"))
	t.Logf("%d metric names of %d queries exported by the binaries and the auditor", len(used), len(queries))

	t.Run("prometheus", func(t *testing.T) {
		promBin, err := exec.LookPath("prometheus")
		if err != nil {
			t.Skip("no prometheus binary (apt-get install prometheus): the queries were not evaluated against a real Prometheus")
		}
		prom := startPrometheus(t, promBin, targets)
		prom.requireRulesHealthy(t, len(ruleQueries(t)))
		var empty []string
		ok := poll(2*time.Minute, time.Second, func() bool {
			empty = empty[:0]
			for _, q := range queries {
				n, err := prom.count(q.value)
				require.NoError(t, err, "%s: %s", q.source, q.value)
				if n == 0 {
					empty = append(empty, q.source+": "+q.value)
				}
			}
			return len(empty) == 0
		})
		require.True(t, ok, "queries that returned no series against Prometheus scraping the system under load:\n%s", strings.Join(empty, "\n"))
		for _, q := range queries {
			if q.value != q.expr {
				_, err := prom.count(q.expr)
				require.NoError(t, err, "%s: %s", q.source, q.expr)
			}
		}
		t.Logf("%d queries returned series in Prometheus", len(queries))
	})
}

// startAuditor runs `goodgoctl audit -interval 1s` against e as an
// operator and returns the address of its /metrics.
func (e *Env) startAuditor(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "goodgoctl")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/goodgo/goodgo/goodgoctl").CombinedOutput()
	require.NoError(t, err, "build goodgoctl: %s", out)
	p := startCommand(t, "auditor", bin, "audit", "-interval", "1s", "-metrics-addr", "127.0.0.1:0",
		"-token", e.operator, "-cacert", e.PKI.Paths.CA(),
		"-order", e.Addr(svcOrder), "-payment", e.Addr(svcPayment),
		"-inventory", e.Addr(svcInventory), "-orchestrator", e.Addr(svcOrchestrator))
	listening := regexp.MustCompile(`metrics on http://([^/\s]+)/metrics`)
	var addr string
	require.True(t, poll(30*time.Second, 20*time.Millisecond, func() bool {
		if m := listening.FindStringSubmatch(p.Log()); m != nil {
			addr = m[1]
		}
		return addr != "" || p.Exited()
	}), "the auditor did not say where its metrics are:\n%s", p.Log())
	require.NotEmpty(t, addr, "the auditor exited:\n%s", p.Log())
	return addr
}

// holdALane inserts into the payment outbox an event sealed under a key id
// no relay holds: the relay holds lane 0 of that database (only payment
// events of that lane wait; the sagas call payment synchronously).
func (e *Env) holdALane(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := e.DB[svcPayment].Exec(ctx, `INSERT INTO outbox (event_id, lane, topic, aggregate_type, aggregate_id,
		aggregate_version, event_type, content_type, payload, key_id)
		VALUES ($1, 0, 'goodgo.payment.events', 'payment', $2, 1, 'payment.processed', 'application/json', '\x00', 'e2e-unknown-key')`,
		uuid.New(), uuid.NewString())
	require.NoError(t, err)
}

// trickle places an order every 100 ms until the returned stop is called.
// It is load, not the subject: failed calls (PostgreSQL shared with other
// tests may refuse connections for a while) are logged, and stop requires
// only that orders were placed.
func (e *Env) trickle(t *testing.T) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var placed, failed atomic.Int64
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			card := cardOK
			if i%4 == 3 {
				card = cardDecline
			}
			octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := e.PlaceOrder(octx, items(plentySKUs[i%len(plentySKUs)], 1), card)
			ocancel()
			switch {
			case err == nil:
				placed.Add(1)
			case ctx.Err() == nil:
				if failed.Add(1) <= 5 {
					t.Logf("trickle: place order: %v", err)
				}
			}
		}
	})
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			t.Logf("trickle: %d orders placed, %d failed", placed.Load(), failed.Load())
			require.Positive(t, placed.Load(), "the trickle placed no order")
		})
	}
}

// startCommand runs bin with args (its output kept as a Process's log),
// stopped gracefully at cleanup.
func startCommand(t testing.TB, name, bin string, args ...string) *Process {
	t.Helper()
	return startProcess(t, name, exec.Command(bin, args...), true)
}

// promServer is a Prometheus server the test started.
type promServer struct{ base string }

// startPrometheus runs bin scraping targets (job name -> host:port) every
// second with the rules file loaded, and waits until every target is up.
func startPrometheus(t *testing.T, bin string, targets map[string]string) *promServer {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(rulesFile)
	require.NoError(t, err)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %q\nscrape_configs:\n", rules)
	for job, addr := range targets {
		fmt.Fprintf(&cfg, "  - job_name: %q\n    static_configs:\n      - targets: [%q]\n", job, addr)
	}
	cfgFile := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgFile, []byte(cfg.String()), 0o600))

	// A port of its own: Prometheus cannot listen on :0 and say where.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	p := startCommand(t, "prometheus", bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	s := &promServer{base: "http://" + addr}
	ok := poll(time.Minute, 250*time.Millisecond, func() bool {
		n, err := s.count(`up == 1`)
		return (err == nil && n == len(targets)) || p.Exited()
	})
	require.False(t, p.Exited(), "prometheus exited:\n%s", p.Log())
	require.True(t, ok, "prometheus did not see all %d targets up", len(targets))
	return s
}

// count evaluates query now and returns how many series it returned.
func (s *promServer) count(query string) (int, error) {
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := s.get("/api/v1/query?query="+url.QueryEscape(query), &r); err != nil {
		return 0, err
	}
	if r.Status != "success" {
		return 0, fmt.Errorf("prometheus: %s", r.Error)
	}
	if r.Data.ResultType == "scalar" {
		return 1, nil
	}
	var series []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &series); err != nil {
		return 0, fmt.Errorf("prometheus result: %w", err)
	}
	return len(series), nil
}

// requireRulesHealthy waits until Prometheus has loaded want rules and
// evaluated each of them without error.
func (s *promServer) requireRulesHealthy(t *testing.T, want int) {
	t.Helper()
	var bad []string
	ok := poll(30*time.Second, 250*time.Millisecond, func() bool {
		var r struct {
			Data struct {
				Groups []struct {
					Rules []struct {
						Name      string `json:"name"`
						Health    string `json:"health"`
						LastError string `json:"lastError"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := s.get("/api/v1/rules", &r); err != nil {
			bad = []string{err.Error()}
			return false
		}
		bad = bad[:0]
		n := 0
		for _, g := range r.Data.Groups {
			for _, rule := range g.Rules {
				n++
				if rule.Health != "ok" {
					bad = append(bad, fmt.Sprintf("%s: %s %s", rule.Name, rule.Health, rule.LastError))
				}
			}
		}
		return n == want && len(bad) == 0
	})
	require.True(t, ok, "prometheus did not load and evaluate the %d rules cleanly: %v", want, bad)
}

func (s *promServer) get(path string, into any) error {
	resp, err := http.Get(s.base + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, into); err != nil {
		return fmt.Errorf("prometheus %s: %s: %w", path, resp.Status, err)
	}
	return nil
}

// TestDashboardsAreWellFormed checks what Grafana needs of each dashboard
// and no test above sees: a unique uid and title, the datasource variable
// the queries refer to, unique panel ids, panels within the 24-column grid
// that do not overlap, and each query with a refId and that data source.
func TestDashboardsAreWellFormed(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	require.NoError(t, err)
	require.Len(t, files, 4, "the seed's four dashboards")
	uids, titles := map[string]string{}, map[string]string{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		var d struct {
			UID        string `json:"uid"`
			Title      string `json:"title"`
			Templating struct {
				List []struct {
					Name, Type, Query string
				} `json:"list"`
			} `json:"templating"`
			Panels []struct {
				ID      int    `json:"id"`
				Type    string `json:"type"`
				Title   string `json:"title"`
				GridPos struct {
					H, W, X, Y int
				} `json:"gridPos"`
				Datasource struct{ Type, UID string } `json:"datasource"`
				Targets    []struct {
					RefID      string                     `json:"refId"`
					Datasource struct{ Type, UID string } `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
		}
		require.NoError(t, json.Unmarshal(raw, &d), f)
		require.NotEmpty(t, d.UID, f)
		require.NotContains(t, uids, d.UID, "%s repeats the uid of %s", f, uids[d.UID])
		require.NotContains(t, titles, d.Title, "%s repeats the title of %s", f, titles[d.Title])
		uids[d.UID], titles[d.Title] = f, f
		require.Len(t, d.Templating.List, 1, f)
		require.Equal(t, "datasource", d.Templating.List[0].Name, f)
		require.Equal(t, "prometheus", d.Templating.List[0].Query, f)
		ids := map[int]bool{}
		cells := map[[2]int]string{}
		for _, p := range d.Panels {
			where := fmt.Sprintf("%s: panel %q", f, p.Title)
			require.NotZero(t, p.ID, where)
			require.False(t, ids[p.ID], "%s: id %d repeated", where, p.ID)
			ids[p.ID] = true
			require.Contains(t, []string{"timeseries", "stat"}, p.Type, where)
			g := p.GridPos
			require.True(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.Y >= 0 && g.X+g.W <= 24, "%s: gridPos %+v", where, g)
			for x := g.X; x < g.X+g.W; x++ {
				for y := g.Y; y < g.Y+g.H; y++ {
					require.Empty(t, cells[[2]int{x, y}], "%s overlaps %s", where, cells[[2]int{x, y}])
					cells[[2]int{x, y}] = p.Title
				}
			}
			require.Equal(t, "${datasource}", p.Datasource.UID, where)
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				require.NotEmpty(t, tg.RefID, where)
				require.False(t, refs[tg.RefID], "%s: refId %s repeated", where, tg.RefID)
				refs[tg.RefID] = true
				require.Equal(t, "prometheus", tg.Datasource.Type, where)
				require.Equal(t, "${datasource}", tg.Datasource.UID, where)
			}
		}
	}
}

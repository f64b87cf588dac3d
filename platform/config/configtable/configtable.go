// Package configtable checks the README's configuration table against what
// a binary really reads: each binary's test runs its loadConfig with a
// lookup that records every variable asked for, and Check fails when one
// is missing from the table or not marked as used by that binary, or when
// the table claims a variable for the binary that it never reads.
package configtable

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Envs are the environments a binary's configuration is loaded in, so that
// variables read only in some branches are read too: production mode with
// nothing set, development mode, and development mode with TLS to Redis and
// Kafka, SASL and the optional URLs set.
var Envs = []map[string]string{
	{},
	{"GOODGO_MODE": "development"},
	{
		"GOODGO_MODE": "development", "REDIS_URL": "rediss://127.0.0.1:6379/0", "KAFKA_TLS": "true",
		"KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "MIGRATE_READ_DATABASE_URL": "postgres://o@127.0.0.1:5432/goodgo_order_read",
	},
}

// NotSettings are variables a binary reads that are not settings of its
// own: set by the platform, never by an operator.
var NotSettings = map[string]string{
	"KUBERNETES_SERVICE_HOST": "set by Kubernetes in every pod; development mode refuses to run there",
}

// Runtime are settings the table lists that loadConfig never reads: the Go
// runtime reads them (and lifecycle.Main looks GOGC up to keep it).
var Runtime = map[string]string{
	"GOGC":       "the collector's target; lifecycle.DefaultGCPercent when unset",
	"GOMEMLIMIT": "the collector's soft memory limit",
}

// Row is one line of the table: its variables and the binaries using them.
type Row struct {
	Vars []string
	// Prefixes are wildcard entries ("OTEL_*" → "OTEL_").
	Prefixes []string
	// All is "all" in the used-by column; else Binaries names them.
	All      bool
	Binaries []string
	Line     int
}

var (
	varName  = regexp.MustCompile("`([A-Z][A-Z0-9_]*)(\\*?)`")
	binaries = []string{"order", "payment", "inventory", "orchestrator", "outbox-relay"}
)

// Parse reads the table under "## Configuration" of the README at path.
func Parse(path string) ([]Row, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("configtable: %w", err)
	}
	defer f.Close()
	var rows []Row
	in := false
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Configuration"
			continue
		case !in || !strings.HasPrefix(line, "| `"):
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		if len(cells) < 3 {
			return nil, fmt.Errorf("configtable: %s:%d: a row needs variable, default and used-by cells", path, n)
		}
		r := Row{Line: n}
		// The variables are the first cell's names, before any parenthesis
		// that explains them.
		first := cells[0]
		if i := strings.Index(first, " ("); i >= 0 {
			first = first[:i]
		}
		for _, m := range varName.FindAllStringSubmatch(first, -1) {
			if m[2] == "*" {
				r.Prefixes = append(r.Prefixes, m[1])
			} else {
				r.Vars = append(r.Vars, m[1])
			}
		}
		used := strings.TrimSpace(cells[len(cells)-1])
		if strings.HasPrefix(used, "all") {
			r.All = true
		}
		for _, b := range binaries {
			if regexp.MustCompile(`(^|[ ,])` + regexp.QuoteMeta(b) + `($|[ ,(])`).MatchString(used) {
				r.Binaries = append(r.Binaries, b)
			}
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("configtable: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("configtable: %s has no configuration table", path)
	}
	return rows, nil
}

// README is the repository's README.md, found from the working directory
// upwards (the directory of go.work).
func README() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("configtable: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return filepath.Join(dir, "README.md"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("configtable: no go.work above the working directory")
		}
		dir = parent
	}
}

// Read returns every variable load asks lookup for, in each of Envs.
func Read(load func(lookup func(string) (string, bool))) []string {
	var mu sync.Mutex
	seen := map[string]bool{}
	for _, env := range Envs {
		load(func(name string) (string, bool) {
			mu.Lock()
			seen[name] = true
			mu.Unlock()
			v, ok := env[name]
			return v, ok
		})
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Compare reports, for binary, the variables it reads that the table does
// not list for it, and those the table lists for it that it never reads.
func Compare(rows []Row, binary string, read []string) (unlisted, unread []string) {
	uses := func(r Row) bool { return r.All || slices.Contains(r.Binaries, binary) }
	listed := map[string]bool{}
	var prefixes []string
	for _, r := range rows {
		if !uses(r) {
			continue
		}
		for _, v := range r.Vars {
			listed[v] = true
		}
		prefixes = append(prefixes, r.Prefixes...)
	}
	readSet := map[string]bool{}
	for _, v := range read {
		readSet[v] = true
		if _, ok := NotSettings[v]; ok || listed[v] {
			continue
		}
		if slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(v, p) }) {
			continue
		}
		unlisted = append(unlisted, v)
	}
	for v := range listed {
		// A variable of a wildcard row (OTEL_EXPORTER_OTLP_ENDPOINT beside
		// OTEL_*) is read by the telemetry SDK, not by loadConfig.
		_, runtime := Runtime[v]
		if !readSet[v] && !runtime && !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(v, p) }) {
			unread = append(unread, v)
		}
	}
	slices.Sort(unread)
	return unlisted, unread
}

// Check fails t unless the README's table lists exactly the variables that
// binary's load reads (load is its loadConfig, errors ignored).
func Check(t testing.TB, binary string, load func(lookup func(string) (string, bool))) {
	t.Helper()
	path, err := README()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	unlisted, unread := Compare(rows, binary, Read(load))
	if len(unlisted) > 0 {
		t.Errorf("%s reads variables that README.md's configuration table does not list for it: %s", binary, strings.Join(unlisted, ", "))
	}
	if len(unread) > 0 {
		t.Errorf("README.md's configuration table lists variables for %s that it never reads: %s", binary, strings.Join(unread, ", "))
	}
}

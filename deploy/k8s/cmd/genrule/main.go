// Command genrule writes base/monitoring/prometheusrule.yaml from
// deploy/prometheus/rules/goodgo.yml (run by `go generate` in deploy/k8s).
package main

import (
	"fmt"
	"os"

	"github.com/goodgo/goodgo/deploy/k8s"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "genrule: "+err.Error())
		os.Exit(1)
	}
}

func run() error {
	rules, err := os.ReadFile(k8s.RulesFile)
	if err != nil {
		return fmt.Errorf("read rules: %w", err)
	}
	out, err := k8s.PrometheusRule(rules)
	if err != nil {
		return fmt.Errorf("%s: %w", k8s.RulesFile, err)
	}
	if err := os.WriteFile(k8s.PrometheusRuleFile, out, 0o644); err != nil { //nolint:gosec // a manifest, world-readable like the rest of the tree
		return fmt.Errorf("write %s: %w", k8s.PrometheusRuleFile, err)
	}
	return nil
}

// Package k8s holds GoodGo's Kubernetes manifests (a kustomize base and the
// local and production overlays, README.md) and the tests that render each
// overlay with kustomize, decode every object strictly into the Kubernetes
// API types and check them against the deployment rules.
//
// base/monitoring/prometheusrule.yaml is generated from the alert rules of
// deploy/prometheus/rules/goodgo.yml:
//
//go:generate go run ./cmd/genrule
package k8s

// Package e2e tests the five GoodGo binaries as processes: built from
// source, started against the local PostgreSQL and Redis, and driven over
// their real network interfaces.
package e2e

// Command order runs the order service: the write side of orders
// (OrderService over gRPC), with an outbox of order events in its own
// PostgreSQL database and idempotency keys in Redis. See README.md.
package main

import "github.com/goodgo/goodgo/platform/lifecycle"

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { lifecycle.Main("order", loadConfig, run) }

// Command inventory runs the inventory service: the catalog, stock and
// stock reservations (InventoryService over gRPC), with an outbox of
// inventory events in its own PostgreSQL database and idempotency keys in
// Redis. See README.md.
package main

import "github.com/goodgo/goodgo/platform/lifecycle"

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { lifecycle.Main("inventory", loadConfig, run) }

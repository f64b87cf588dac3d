// Command outbox-relay moves events from the outbox tables of the order,
// payment and inventory databases to Kafka: in order per aggregate, at least
// once, woken by LISTEN/NOTIFY, with several replicas sharing the work by
// leased lanes. See README.md.
package main

import "github.com/goodgo/goodgo/platform/lifecycle"

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { lifecycle.Main("outbox-relay", loadConfig, run) }

// Command outbox-relay moves events from the outbox tables of the order,
// payment and inventory databases to Kafka: in order per aggregate, at least
// once, woken by LISTEN/NOTIFY, with several replicas sharing the work by
// leased lanes. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "config: "+line)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout, os.LookupEnv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "outbox-relay: "+err.Error())
		os.Exit(1)
	}
}

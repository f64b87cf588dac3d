// Command inventory runs the inventory service: the catalog, stock and
// stock reservations (InventoryService over gRPC), with an outbox of
// inventory events in its own PostgreSQL database and idempotency keys in
// Redis. See README.md.
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
		// One line per bad variable, "config: NAME: problem".
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintln(os.Stderr, "config: "+line)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, cfg, os.Stdout, os.LookupEnv)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "inventory: "+err.Error())
		os.Exit(1)
	}
}

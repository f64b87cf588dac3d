// Command orchestrator runs the saga orchestrator: it starts the order saga
// from order.created.v1 events and drives payment, inventory and order over
// gRPC, persisting every transition in its own PostgreSQL database
// (SagaService for operators). See README.md.
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
		fmt.Fprintln(os.Stderr, "orchestrator: "+err.Error())
		os.Exit(1)
	}
}

// Command devbroker is the development Kafka broker: an in-memory,
// single-node server of the real Kafka protocol with the project's topics
// created at start. Point KAFKA_BROKERS at the address it logs. See
// README.md.
//
// Settings come from the environment (KAFKA_ADDR, KAFKA_ADVERTISED_ADDR,
// KAFKA_TOPICS, KAFKA_PARTITIONS, KAFKA_AUTO_CREATE_TOPICS, LOG_LEVEL; TLS
// with KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE and KAFKA_TLS_CLIENT_CA_FILE;
// SASL with KAFKA_SASL_USERS) and can be overridden by flags (-h lists
// them). SIGINT or SIGTERM stop it with
// exit status 0; a bad setting exits 2 and a failed start 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	cfg, err := load(os.Args[1:], os.LookupEnv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "devbroker: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	log := newLogger(os.Stdout, cfg.LogLevel)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err = run(ctx, cfg, log)
	stop()
	if err != nil {
		log.Error("devbroker failed", "err", err)
		os.Exit(1)
	}
}

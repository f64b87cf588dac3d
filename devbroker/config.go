package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/config"
)

// Config is everything the binary reads at start.
type Config struct {
	// Broker is passed to broker.Start; its Logger is set by run.
	Broker broker.Config
	// LogLevel is the minimum level logged; debug adds one line per
	// connection and per request.
	LogLevel slog.Level
}

// load reads the environment through lookup, then lets command-line flags
// override it; every flag's default is the variable's value, so `-h` shows
// what is in effect. A bad value is reported naming its variable or flag.
func load(args []string, lookup func(string) (string, bool), stderr io.Writer) (Config, error) {
	e := config.NewEnv(lookup)
	addr := e.HostPort("KAFKA_ADDR", broker.DefaultAddr)
	advertised := e.String("KAFKA_ADVERTISED_ADDR", "")
	topics := e.List("KAFKA_TOPICS", broker.DefaultTopics())
	partitions := e.Int("KAFKA_PARTITIONS", int(broker.DefaultPartitions))
	autoCreate := e.Bool("KAFKA_AUTO_CREATE_TOPICS", false)
	level := e.OneOf("LOG_LEVEL", "info", "debug", "info", "warn", "error")
	if err := e.Err(); err != nil {
		return Config{}, err
	}

	fs := flag.NewFlagSet("devbroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addr, "addr", addr, "listen `host:port`; port 0 picks a free one (KAFKA_ADDR)")
	fs.StringVar(&advertised, "advertised-addr", advertised, "`host:port` clients are told to connect to; empty: the bound address (KAFKA_ADVERTISED_ADDR)")
	topicList := fs.String("topics", strings.Join(topics, ","), "comma-separated topics to create (KAFKA_TOPICS)")
	fs.IntVar(&partitions, "partitions", partitions, "partitions per topic (KAFKA_PARTITIONS)")
	fs.BoolVar(&autoCreate, "auto-create-topics", autoCreate, "create unknown topics on metadata requests (KAFKA_AUTO_CREATE_TOPICS)")
	fs.StringVar(&level, "log-level", level, "debug, info, warn or error (LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	topics = splitList(*topicList)
	if len(topics) == 0 {
		return Config{}, fmt.Errorf("-topics / KAFKA_TOPICS: at least one topic needed")
	}
	// The upper bound only keeps a typo from overflowing int32 or
	// allocating millions of in-memory partitions.
	if partitions < 1 || partitions > 1<<20 {
		return Config{}, fmt.Errorf("-partitions / KAFKA_PARTITIONS: must be from 1 to %d (got %d)", 1<<20, partitions)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return Config{}, fmt.Errorf("-log-level / LOG_LEVEL: %w", err)
	}
	cfg := Config{
		Broker: broker.Config{
			Addr:             addr,
			AdvertisedAddr:   advertised,
			Topics:           topics,
			Partitions:       int32(partitions),
			AutoCreateTopics: autoCreate,
		},
		LogLevel: lv,
	}
	if err := cfg.Broker.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// splitList splits a comma-separated flag value the way config.Env.List
// splits a variable: elements trimmed, empty ones dropped.
func splitList(v string) []string {
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

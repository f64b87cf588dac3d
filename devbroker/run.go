package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/goodgo/goodgo/devbroker/broker"
)

// newLogger returns the JSON logger every line of the binary goes through.
// The "listening" line carries the address clients should use, which is how
// a test that started us on port 0 learns the port.
func newLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})).With("service", "devbroker")
}

// run serves until ctx is cancelled, then stops the broker. It returns an
// error only when the broker cannot start.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	cfg.Broker.Logger = log
	b, err := broker.Start(ctx, cfg.Broker)
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	<-ctx.Done()
	log.Info("shutting down", "cause", context.Cause(ctx).Error())
	b.Close()
	return nil
}

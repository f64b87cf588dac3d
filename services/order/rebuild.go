package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/kafkaconn"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/services/order/internal/projection"
)

// rebuildCommand is `order rebuild-read-model`: it replays the topics into
// a shadow view and swaps it in while the service keeps serving
// (projection.Rebuild). It connects to the read database as its owner
// (MIGRATE_READ_DATABASE_URL, or its default), since it creates and
// renames tables.
func rebuildCommand() lifecycle.Command {
	return lifecycle.NewCommand("rebuild-read-model",
		"rebuild the CQRS order view from the start of the topics into a shadow table, then swap it in; the service keeps serving",
		loadConfig, runRebuild)
}

// migrateReadCommand is `order migrate-read-model`: what `order migrate`
// is for the write database, for the read database (a migration job's
// second step, as its owner: MIGRATE_READ_DATABASE_URL).
func migrateReadCommand() lifecycle.Command {
	return lifecycle.NewCommand("migrate-read-model",
		"create the read database if missing and apply its migrations (MIGRATE_READ_DATABASE_URL), then exit",
		loadConfig, func(ctx context.Context, cfg Config, stdout io.Writer, _ lifecycle.Lookup) error {
			if cfg.ReadModel.Database.MigrateURL == "" {
				return errors.New("MIGRATE_READ_DATABASE_URL: required: the read database's owner migrates it")
			}
			logger := logs.NewLogger(stdout, cfg.Service, cfg.LogLevel)
			return postgres.MigrateDatabase(ctx, cfg.ReadModel.Database.MigrateURL, db.OrderRead, logger, cfg.StartupTimeout)
		})
}

func runRebuild(ctx context.Context, cfg Config, stdout io.Writer, _ lifecycle.Lookup) error {
	logger := logs.NewLogger(stdout, cfg.Service, cfg.LogLevel)
	rm := cfg.ReadModel
	if rm.Database.MigrateURL == "" {
		return errors.New("MIGRATE_READ_DATABASE_URL: required: the read database's owner rebuilds it")
	}
	pool, err := postgres.OpenService(ctx, rm.Database.MigrateURL, rm.Database.MigrateURL, db.OrderRead, logger, cfg.StartupTimeout)
	if err != nil {
		return fmt.Errorf("read database: %w", err)
	}
	defer pool.Close()
	kconn, err := kafkaconn.New(rm.Kafka)
	if err != nil {
		return err
	}
	m, err := projection.NewMetrics(nil)
	if err != nil {
		return err
	}
	stats, err := projection.Rebuild(ctx, pool, cfg.PIIKeys, projection.RebuildConfig{
		Brokers: rm.Kafka.Brokers, MaxBatch: rm.MaxBatch, Role: config.RoleName("order"),
		Dialer: kconn.Dialer("order-read-rebuild"), Transport: kconn.Transport("order-read-rebuild"),
	}, m, logger)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "rebuilt the order view: %d orders in %s (writers held back %s)\n", stats.Orders, stats.Took, stats.Swap)
	return err
}

// Package db embeds each service's SQL migrations, the source of truth for
// its schema. Binaries apply them at start-up (platform/postgres.Migrate);
// sqlc reads the same files to generate typed queries.
package db

import (
	"embed"
	"io/fs"
)

//go:embed order/migrations/*.sql payment/migrations/*.sql inventory/migrations/*.sql orchestrator/migrations/*.sql orderread/migrations/*.sql
var files embed.FS

// Migrations of each database, as golang-migrate files (NNNNNN_name.up.sql).
var (
	Order        = sub("order/migrations")
	Payment      = sub("payment/migrations")
	Inventory    = sub("inventory/migrations")
	Orchestrator = sub("orchestrator/migrations")
	OrderRead    = sub("orderread/migrations")
)

func sub(dir string) fs.FS {
	f, err := fs.Sub(files, dir)
	if err != nil {
		// Unreachable: dir is a constant embedded above.
		panic(err)
	}
	return f
}

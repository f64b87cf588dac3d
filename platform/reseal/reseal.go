// Package reseal is a binary's reseal command, the second half of a key
// rotation (docs/key-rotation.md): once every replica holds the new key and
// writes with it, `<binary> reseal` seals again under the active key every
// value the binary keeps sealed under an older key (or in the clear, from a
// release before sealing), while the system serves, so that the old key
// can be removed. Every rewrite is a compare-and-set on the value read, so
// a concurrent write (sealed under the active key already) wins; a run cut
// short is simply run again.
//
// It connects as the service's own role (DATABASE_URL) and to its Redis,
// with the service's key variables: a Kubernetes Job runs it with the
// service's own environment.
package reseal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/lifecycle"
	"github.com/goodgo/goodgo/platform/logs"
	"github.com/goodgo/goodgo/platform/postgres"
	"github.com/goodgo/goodgo/platform/redisclient"
)

// Stores is what a run reseals with: the service's database (as its own
// role) and its keyrings. SagaContext is nil unless the binary runs sagas.
type Stores struct {
	Pool        *pgxpool.Pool
	PII         *keyring.Keyring
	SagaContext *keyring.Keyring
}

// Target is one kind of sealed value a binary keeps.
type Target struct {
	// Name names it in the log ("orders.shipping_address").
	Name string
	// Run reseals it.
	Run func(ctx context.Context, s Stores) (keyring.ResealStats, error)
}

type settings struct {
	common      config.Common
	db          config.Database
	redis       config.Redis
	idempotency config.Idempotency
	pii         *keyring.Keyring
	sagaContext *keyring.Keyring
}

// Command is service's reseal command: it reseals targets and the replies
// the service keeps in Redis for idempotent replay (PII keys), logs what
// each did, and fails if any value did not open (naming its key). sagas
// says whether the binary's keys include SAGA_CONTEXT_KEYS.
func Command(service string, sagas bool, targets ...Target) lifecycle.Command {
	load := func(lookup lifecycle.Lookup) (settings, error) {
		e := config.NewEnv(lookup)
		s := settings{common: config.LoadCommon(e, service, "127.0.0.1:0", "127.0.0.1:0")}
		s.db = config.LoadDatabase(e, service, s.common.Dev)
		s.redis = config.LoadRedis(e)
		s.idempotency = config.LoadIdempotency(e)
		s.pii = e.Keyring(config.PIIKeys, s.common.Dev)
		if sagas {
			s.sagaContext = e.Keyring(config.SagaContextKeys, s.common.Dev)
		}
		return s, e.Err()
	}
	run := func(ctx context.Context, s settings, stdout io.Writer, _ lifecycle.Lookup) error {
		logger := logs.NewLogger(stdout, service, s.common.LogLevel)
		pool, err := postgres.Connect(ctx, s.db.URL, logger, s.common.StartupTimeout)
		if err != nil {
			return err
		}
		defer pool.Close()
		rdb, err := redisclient.Connect(ctx, s.redis, logger, s.common.StartupTimeout)
		if err != nil {
			return err
		}
		defer func() { _ = rdb.Close() }()
		replies, err := idempotency.NewRedisStore(rdb, idempotency.RedisOptions{Prefix: s.idempotency.Prefix, Service: service, Keys: s.pii})
		if err != nil {
			return err
		}
		all := slices.Concat(targets, []Target{{Name: "redis idempotency replies", Run: func(ctx context.Context, _ Stores) (keyring.ResealStats, error) {
			return replies.Reseal(ctx)
		}}})
		stores := Stores{Pool: pool, PII: s.pii, SagaContext: s.sagaContext}
		var errs []error
		for _, t := range all {
			stats, err := t.Run(ctx, stores)
			logger.InfoContext(ctx, "resealed", "target", t.Name, "scanned", stats.Scanned, "resealed", stats.Resealed, "failed", stats.Failed)
			if err != nil {
				errs = append(errs, fmt.Errorf("reseal %s: %w", t.Name, err))
			}
		}
		return errors.Join(errs...)
	}
	return lifecycle.NewCommand("reseal", "seal every stored secret value under the active keys again (a key rotation's last step), then exit", load, run)
}

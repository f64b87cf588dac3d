package db_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/db"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/postgres"
)

// The login roles the migrations create.
const (
	roleOrder        = "goodgo_order"
	rolePayment      = "goodgo_payment"
	roleInventory    = "goodgo_inventory"
	roleOrchestrator = "goodgo_orchestrator"
	roleRelay        = "goodgo_relay"
)

var roles = []string{roleOrder, rolePayment, roleInventory, roleOrchestrator, roleRelay}

// database is one service's database and who may do what in it.
type database struct {
	name       string
	migrations fs.FS
	// grants are, per role, the privileges on each table: exactly these,
	// on every table of the schema (a new table without a decision about
	// its grants fails the test). Roles not named hold nothing, and may
	// not connect.
	grants map[string]map[string][]string
	// columns are, per role, its privileges on single columns
	// ("table.column": privileges), exactly.
	columns map[string]map[string][]string
}

const (
	sel, ins, upd, del = postgres.Select, postgres.Insert, postgres.Update, postgres.Delete
)

// relayGrants are the relay's in every database with an outbox.
var relayGrants = map[string][]string{"outbox": {sel, upd, del}, "outbox_lanes": {sel, ins, upd}}

var databases = []database{
	{name: "order", migrations: db.Order, grants: map[string]map[string][]string{
		roleOrder: {"orders": {sel, ins, upd}, "order_items": {sel, ins, upd}, "outbox": {ins}, "schema_migrations": {sel}},
		roleRelay: relayGrants,
	}},
	{name: "payment", migrations: db.Payment, grants: map[string]map[string][]string{
		rolePayment: {"payments": {sel, ins, upd}, "outbox": {ins}, "schema_migrations": {sel}},
		roleRelay:   relayGrants,
	}},
	{name: "inventory", migrations: db.Inventory, grants: map[string]map[string][]string{
		roleInventory: {"products": {sel, ins, upd}, "reservations": {sel, ins, upd}, "reservation_items": {sel, ins, upd}, "outbox": {ins}, "stock_deltas": {sel, ins}, "schema_migrations": {sel}},
		roleRelay:     relayGrants,
	}},
	{name: "orchestrator", migrations: db.Orchestrator, grants: map[string]map[string][]string{
		roleOrchestrator: {
			"sagas": {sel, ins, upd}, "saga_steps": {sel, ins, upd}, "saga_audit": {sel, ins},
			"inbox": {sel, ins}, "inbox_versions": {sel, ins, upd}, "inbox_parked": {sel, ins},
			"schema_migrations": {sel},
		},
	}, columns: map[string]map[string][]string{
		// `orchestrator reseal` rewrites sealed parked payloads; operators
		// resolve parked events (ParkedEventService): nothing else.
		roleOrchestrator: {
			"inbox_parked.key_id": {upd}, "inbox_parked.payload": {upd},
			"inbox_parked.resolved_at": {upd}, "inbox_parked.resolution": {upd}, "inbox_parked.resolved_by": {upd},
			"inbox_parked.resolution_reason": {upd}, "inbox_parked.error": {upd}, "inbox_parked.replay_attempts": {upd},
		},
	}},
}

// migrated holds each database's URL as its owner, migrated by that owner:
// not a superuser, as on a managed PostgreSQL. The four migrate at once,
// racing to create the shared roles as parallel replicas would.
func migrated(t *testing.T) map[string]string {
	t.Helper()
	urls := map[string]string{}
	for _, d := range databases {
		urls[d.name] = pgtest.NewOwnedDatabase(t)
	}
	errs := make(chan error, len(databases))
	for _, d := range databases {
		go func() { errs <- postgres.Migrate(t.Context(), urls[d.name], d.migrations, nil) }()
	}
	for range databases {
		require.NoError(t, <-errs)
	}
	return urls
}

// TestGrantsAreExactlyTheRolesNeeds reads back what each role may do on
// every table of every database, and that only the roles named may
// connect: PUBLIC holds nothing.
func TestGrantsAreExactlyTheRolesNeeds(t *testing.T) {
	t.Parallel()
	urls := migrated(t)
	for _, d := range databases {
		t.Run(d.name, func(t *testing.T) {
			conn := connect(t, urls[d.name])
			for _, role := range roles {
				got := map[string][]string{}
				rows, err := conn.Query(t.Context(), `
SELECT c.relname::text,
       ARRAY(SELECT p FROM unnest($2::text[]) WITH ORDINALITY AS x(p, n)
             WHERE has_table_privilege($1, c.oid, p) ORDER BY n)
FROM pg_class c
WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')`,
					role, []string{sel, ins, upd, del, postgres.Truncate, postgres.References, postgres.Trigger})
				require.NoError(t, err)
				for rows.Next() {
					var table string
					var privs []string
					require.NoError(t, rows.Scan(&table, &privs))
					if len(privs) > 0 {
						got[table] = privs
					}
				}
				require.NoError(t, rows.Err())
				want := d.grants[role]
				if want == nil {
					want = map[string][]string{}
				}
				require.Equal(t, want, got, "privileges of %s in the %s database", role, d.name)

				gotColumns := map[string][]string{}
				rows, err = conn.Query(t.Context(), `
SELECT c.relname || '.' || a.attname, p.privilege_type
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid, aclexplode(a.attacl) p
WHERE c.relnamespace = 'public'::regnamespace AND p.grantee = $1::regrole
ORDER BY 1, 2`, role)
				require.NoError(t, err)
				for rows.Next() {
					var column, priv string
					require.NoError(t, rows.Scan(&column, &priv))
					gotColumns[column] = append(gotColumns[column], priv)
				}
				require.NoError(t, rows.Err())
				wantColumns := d.columns[role]
				if wantColumns == nil {
					wantColumns = map[string][]string{}
				}
				require.Equal(t, wantColumns, gotColumns, "column privileges of %s in the %s database", role, d.name)

				var canConnect, canTemp bool
				require.NoError(t, conn.QueryRow(t.Context(),
					"SELECT has_database_privilege($1, current_database(), 'CONNECT'), has_database_privilege($1, current_database(), 'TEMPORARY')",
					role).Scan(&canConnect, &canTemp))
				require.Equal(t, d.grants[role] != nil, canConnect, "may %s connect to the %s database", role, d.name)
				require.False(t, canTemp, "%s may create temporary tables in the %s database", role, d.name)
			}
			var public []string
			rows, err := conn.Query(t.Context(), `
SELECT c.relname::text FROM pg_class c, aclexplode(c.relacl) a
WHERE c.relnamespace = 'public'::regnamespace AND a.grantee = 0
UNION ALL
SELECT 'database ' || datname FROM pg_database, aclexplode(datacl) a
WHERE datname = current_database() AND a.grantee = 0`)
			require.NoError(t, err)
			for rows.Next() {
				var name string
				require.NoError(t, rows.Scan(&name))
				public = append(public, name)
			}
			require.NoError(t, rows.Err())
			require.Empty(t, public, "privileges granted to PUBLIC")
		})
	}
}

// TestEachRoleIsRefusedWhatItMayNotDo connects as each role and tries what
// it must not do (SQLSTATE 42501, insufficient_privilege) next to what it
// must: the services' writers append to their outbox and cannot read,
// change or delete it; the relay reads, marks and deletes outbox rows and
// touches nothing else; no role connects to a database not its own.
func TestEachRoleIsRefusedWhatItMayNotDo(t *testing.T) {
	t.Parallel()
	urls := migrated(t)

	type attempt struct {
		what string
		do   func(ctx context.Context, tx pgx.Tx) error
		ok   bool
	}
	exec := func(sql string) func(context.Context, pgx.Tx) error {
		return func(ctx context.Context, tx pgx.Tx) error { _, err := tx.Exec(ctx, sql); return err }
	}
	// The writers' statement (platform/outbox.Writer.Append).
	appendEvent := func(ctx context.Context, tx pgx.Tx) error {
		return outboxdb.New(tx).InsertEvents(ctx, outboxdb.InsertEventsParams{
			EventIds: []uuid.UUID{uuid.New()}, Lanes: []int16{3}, Topics: []string{"t"}, AggregateTypes: []string{"order"},
			AggregateIds: []string{"a1"}, AggregateVersions: []int64{1}, EventTypes: []string{"order.created.v1"},
			Payloads: [][]byte{{1}}, KeyIds: []string{""}, ContentType: "application/x-protobuf", OccurredAt: time.Now(),
		})
	}
	// The relay's statements (services/outbox-relay, platform/outbox/outboxdb).
	relayWork := []attempt{
		{"read pending outbox rows", exec("SELECT id, payload FROM outbox WHERE lane = 3 AND published_at IS NULL ORDER BY id LIMIT 10"), true},
		{"count outbox rows (TableStats)", func(ctx context.Context, tx pgx.Tx) error { _, err := outboxdb.New(tx).TableStats(ctx); return err }, true},
		{"seed and claim lanes", func(ctx context.Context, tx pgx.Tx) error {
			q := outboxdb.New(tx)
			if err := q.SeedLanes(ctx, 32); err != nil {
				return err
			}
			_, err := q.ClaimLanes(ctx, outboxdb.ClaimLanesParams{Owner: "r1", TtlMs: 1000, MaxLanes: 32})
			return err
		}, true},
		{"mark rows published", func(ctx context.Context, tx pgx.Tx) error {
			_, err := outboxdb.New(tx).MarkPublished(ctx, outboxdb.MarkPublishedParams{Ids: []int64{1, 2}, Owner: "r1"})
			return err
		}, true},
		{"delete published rows (janitor)", func(ctx context.Context, tx pgx.Tx) error {
			_, err := outboxdb.New(tx).DeletePublished(ctx, outboxdb.DeletePublishedParams{RetentionMs: 0, MaxRows: 10})
			return err
		}, true},
		{"append to the outbox", appendEvent, false},
		{"delete lanes", exec("DELETE FROM outbox_lanes"), false},
		{"truncate the outbox", exec("TRUNCATE outbox"), false},
		{"read the schema version", exec("SELECT version FROM schema_migrations"), false},
		{"create a table", exec("CREATE TABLE relay_stash (x int)"), false},
	}
	writerWork := func(table string) []attempt {
		return []attempt{
			{"append to the outbox", appendEvent, true},
			{"read its business table " + table, exec("SELECT * FROM " + table + " LIMIT 1"), true},
			{"update its business table " + table, exec("UPDATE " + table + " SET version = version WHERE false"), true},
			{"read the schema version", exec("SELECT version, dirty FROM schema_migrations"), true},
			{"read the outbox", exec("SELECT id FROM outbox LIMIT 1"), false},
			{"count the outbox", exec("SELECT count(*) FROM outbox"), false},
			{"mark outbox rows", exec("UPDATE outbox SET published_at = now()"), false},
			{"delete outbox rows", exec("DELETE FROM outbox"), false},
			{"truncate the outbox", exec("TRUNCATE outbox"), false},
			{"read the lanes", exec("SELECT lane FROM outbox_lanes"), false},
			{"claim a lane", exec("INSERT INTO outbox_lanes (lane) VALUES (0)"), false},
			{"delete from its business table " + table, exec("DELETE FROM " + table), false},
			{"create a table", exec("CREATE TABLE stash (x int)"), false},
		}
	}
	businessRead := func(tables ...string) []attempt {
		var out []attempt
		for _, t := range tables {
			out = append(out,
				attempt{"read " + t, exec("SELECT * FROM " + t + " LIMIT 1"), false},
				attempt{"update " + t, exec("UPDATE " + t + " SET version = version WHERE false"), false},
			)
		}
		return out
	}
	attempts := map[string]map[string][]attempt{ // database → role → attempts
		"order": {
			roleOrder: writerWork("orders"),
			roleRelay: append(slices.Clone(relayWork), append(businessRead("orders"),
				attempt{"read order_items", exec("SELECT * FROM order_items"), false})...),
		},
		"payment": {
			rolePayment: writerWork("payments"),
			roleRelay:   append(slices.Clone(relayWork), businessRead("payments")...),
		},
		"inventory": {
			roleInventory: writerWork("products"),
			roleRelay: append(slices.Clone(relayWork), append(businessRead("products", "reservations"),
				attempt{"read reservation_items", exec("SELECT * FROM reservation_items"), false})...),
		},
		"orchestrator": {
			roleOrchestrator: {
				{"read sagas", exec("SELECT * FROM sagas LIMIT 1"), true},
				{"update sagas", exec("UPDATE sagas SET version = version + 1 WHERE false"), true},
				{"lock an inbox version", exec("SELECT version FROM inbox_versions WHERE false FOR UPDATE"), true},
				{"record a processed event", exec("INSERT INTO inbox (consumer, event_id, event_type, aggregate_type, aggregate_id, aggregate_version) " +
					"VALUES ('c', gen_random_uuid(), 't', 'order', 'a', 1) ON CONFLICT (consumer, event_id) DO NOTHING"), true},
				{"append to the audit log", exec("INSERT INTO saga_audit (saga_id, actor, action) SELECT id, 'a', 'b' FROM sagas WHERE false"), true},
				{"rewrite the audit log", exec("UPDATE saga_audit SET actor = 'someone else'"), false},
				{"delete the audit log", exec("DELETE FROM saga_audit"), false},
				{"delete sagas", exec("DELETE FROM sagas"), false},
				{"truncate sagas", exec("TRUNCATE sagas"), false},
				{"delete processed events", exec("DELETE FROM inbox"), false},
				{"reseal a parked payload", exec("UPDATE inbox_parked SET payload = payload, key_id = key_id WHERE false"), true},
				{"resolve a parked event", exec("UPDATE inbox_parked SET resolved_at = now(), resolution = 'discarded', " +
					"resolved_by = 'ops', resolution_reason = 'r' WHERE false"), true},
				{"record a failed replay", exec("UPDATE inbox_parked SET error = 'e', replay_attempts = replay_attempts + 1 WHERE false"), true},
				{"lock a parked event", exec("SELECT id FROM inbox_parked WHERE false FOR UPDATE"), true},
				{"rewrite a parked event", exec("UPDATE inbox_parked SET event_type = 'x', headers = '{}' WHERE false"), false},
				{"delete a parked event", exec("DELETE FROM inbox_parked"), false},
				{"create a table", exec("CREATE TABLE stash (x int)"), false},
			},
		},
	}

	for _, d := range databases {
		for _, role := range roles {
			t.Run(d.name+"/"+role, func(t *testing.T) {
				roleURL := pgtest.AsRole(urls[d.name], role)
				if d.grants[role] == nil {
					_, err := pgx.Connect(t.Context(), roleURL)
					requireRefused(t, err, "%s connecting to the %s database", role, d.name)
					return
				}
				conn := connect(t, roleURL)
				for _, a := range attempts[d.name][role] {
					tx, err := conn.Begin(t.Context())
					require.NoError(t, err)
					err = a.do(t.Context(), tx)
					_ = tx.Rollback(t.Context())
					if a.ok {
						require.NoError(t, err, "%s may %s", role, a.what)
					} else {
						requireRefused(t, err, "%s may not %s", role, a.what)
					}
				}
			})
		}
	}
}

// requireRefused requires err to be PostgreSQL's insufficient_privilege.
func requireRefused(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	what := fmt.Sprintf(format, args...)
	var pgErr *pgconn.PgError
	require.True(t, errors.As(err, &pgErr), "%s: want SQLSTATE 42501, got %v", what, err)
	require.Equal(t, "42501", pgErr.Code, "%s: %v", what, err)
}

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dbURL)
	require.NoError(t, err, "connect as %s", user(dbURL))
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func user(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "?"
	}
	return u.User.Username()
}

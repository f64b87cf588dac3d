package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/event"
)

// secretStreet is part of every shipping address the e2e shoppers use
// (placeOrder): personal data that must never rest in the clear.
const secretStreet = "St James's Square"

// TestPersonalDataRestsSealedAndKeysRotate places orders, parks a poison
// event carrying the address at the orchestrator, and then searches every
// row of every table of the four databases and every Redis record of the
// environment for the address, in the clear or hex-encoded. Then it rotates
// the PII and saga-context keys as the runbook does (docs/key-rotation.md):
// the binaries' reseal commands seal everything again under the new keys,
// and services restarted without the old keys still read every order.
func TestPersonalDataRestsSealedAndKeysRotate(t *testing.T) {
	e := NewEnv(t, envOptions{})
	ids := make([]string, 5)
	for i := range ids {
		ids[i] = e.MustPlaceOrder(t, items("SKU-KEYBOARD", 1), cardOK).GetOrderId()
	}
	for _, id := range ids {
		e.WaitOrder(t, id, sagaTimeout)
	}
	parked := e.parkPoisonEvent(t)

	e.requireNoPlaintext(t, secretStreet)
	e.requireKeyIDs(t, "pii-1", "saga-1")

	// Step 1 and 2 of a rotation (every replica holds both keys, then
	// writes with the new one) are configuration; the services here keep
	// running with the old keys, which the reseal run must not disturb.
	rotated := map[string]map[string]string{}
	for _, svc := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator} {
		v := e.env(svc)
		v[config.PIIKeys.Keys] = "pii-2:" + newKeyB64(t) + "," + e.PKI.Key(svc, config.PIIKeys)
		v[config.PIIKeys.Active] = "pii-2"
		if svc == svcOrchestrator {
			v[config.SagaContextKeys.Keys] = "saga-2:" + newKeyB64(t) + "," + e.PKI.Key(svc, config.SagaContextKeys)
			v[config.SagaContextKeys.Active] = "saga-2"
		}
		rotated[svc] = v
		out, code := e.runCommand(t, svc, rotated[svc], "reseal")
		require.Equal(t, 0, code, "%s reseal:\n%s", svc, out)
		require.Contains(t, out, `"msg":"resealed"`)
	}
	e.requireKeyIDs(t, "pii-2", "saga-2")
	e.requireNoPlaintext(t, secretStreet)

	// Step 3: the old key goes. The order service restarted with only the
	// new key reads every order, the orchestrator every parked payload.
	for _, svc := range []string{svcOrder, svcOrchestrator} {
		only := map[string]string{}
		for _, p := range []config.Purpose{config.PIIKeys, config.SagaContextKeys} {
			if set, ok := rotated[svc][p.Keys]; ok {
				only[p.Keys], _, _ = strings.Cut(set, ",")
				only[p.Active] = rotated[svc][p.Active]
			}
		}
		e.setVars(svc, only)
	}
	e.Kill(svcOrder)
	e.Restart(svcOrder)
	for _, id := range ids {
		o := e.WaitOrder(t, id, sagaTimeout)
		require.Equal(t, "12 St James's Square", o.GetShippingAddress().GetLine1())
	}
	var kid string
	var payload []byte
	require.NoError(t, e.DB[svcOrchestrator].QueryRow(context.Background(),
		"SELECT key_id, payload FROM inbox_parked WHERE event_id = $1", parked).Scan(&kid, &payload))
	require.Equal(t, "pii-2", kid)
}

// parkPoisonEvent publishes an order.created event whose payload is not the
// message its type says (the address as text) and waits until the
// orchestrator has parked it; it returns the event id.
func (e *Env) parkPoisonEvent(t *testing.T) uuid.UUID {
	t.Helper()
	id := uuid.New()
	w := &kafka.Writer{Addr: kafka.TCP(e.Broker.Addr()), Topic: event.TopicOrder, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond}
	defer func() { _ = w.Close() }()
	header := func(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }
	orderID := uuid.NewString()
	require.NoError(t, w.WriteMessages(context.Background(), kafka.Message{
		Key: []byte(orderID),
		Headers: []kafka.Header{
			header(event.HeaderEventID, id.String()), header(event.HeaderEventType, event.OrderCreated),
			header(event.HeaderAggregateType, "order"), header(event.HeaderAggregateID, orderID),
			header(event.HeaderAggregateVersion, "1"), header(event.HeaderOccurredAt, time.Now().UTC().Format(time.RFC3339Nano)),
			header(event.HeaderContentType, event.ContentTypeProtobuf),
		},
		Value: []byte("\xff\xff not a protobuf: Ada Lovelace, 12 " + secretStreet + ", London"),
	}))
	ok := poll(sagaTimeout, 50*time.Millisecond, func() bool {
		var n int
		err := e.DB[svcOrchestrator].QueryRow(context.Background(), "SELECT count(*) FROM inbox_parked WHERE event_id = $1", id).Scan(&n)
		return err == nil && n == 1
	})
	require.True(t, ok, "the poison event was not parked")
	return id
}

// requireNoPlaintext searches every row of every table of the services'
// databases (as text: bytea shows as hex) and every Redis record of the
// environment for s, as is and hex-encoded.
func (e *Env) requireNoPlaintext(t *testing.T, s string) {
	t.Helper()
	ctx := context.Background()
	needles := []string{s, hex.EncodeToString([]byte(s))}
	searched := 0
	for svc, pool := range e.DB {
		rows, err := pool.Query(ctx, `SELECT quote_ident(table_name) FROM information_schema.tables
			WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
		require.NoError(t, err)
		tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		for _, table := range tables {
			for _, needle := range needles {
				var n int
				require.NoError(t, pool.QueryRow(ctx,
					"SELECT count(*) FROM "+table+" t WHERE position($1 IN t::text) > 0", needle).Scan(&n))
				require.Zero(t, n, "%s.%s holds %q in the clear", svc, table, s)
			}
			searched++
		}
	}
	require.Greater(t, searched, 10, "every table was searched")

	opt, err := redis.ParseURL(e.redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer func() { _ = rdb.Close() }()
	iter := rdb.Scan(ctx, 0, e.idemPrefix+"*", 1000).Iterator()
	records := 0
	for iter.Next(ctx) {
		if typ, err := rdb.Type(ctx, iter.Val()).Result(); err != nil || typ != "string" {
			continue // a tracking set: record keys only
		}
		v, err := rdb.Get(ctx, iter.Val()).Result()
		require.NoError(t, err)
		require.False(t, strings.Contains(v, s), "redis %s holds %q in the clear", iter.Val(), s)
		records++
	}
	require.NoError(t, iter.Err())
	require.Positive(t, records, "the order replies were searched")
}

// requireKeyIDs checks that every sealed address, parked payload and saga
// context is under pii (the first two) or saga.
func (e *Env) requireKeyIDs(t *testing.T, pii, saga string) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []struct {
		svc, sql, want string
	}{
		{svcOrder, "SELECT DISTINCT shipping_address_key_id FROM orders", pii},
		{svcOrchestrator, "SELECT DISTINCT key_id FROM inbox_parked", pii},
		{svcOrchestrator, "SELECT DISTINCT key_id FROM sagas", saga},
	} {
		rows, err := e.DB[q.svc].Query(ctx, q.sql)
		require.NoError(t, err)
		kids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{q.want}, kids, "%s: %s", q.svc, q.sql)
	}
}

// runCommand runs `<svc> <args…>` to its end with vars as its environment
// and returns its output and exit code.
func (e *Env) runCommand(t *testing.T, svc string, vars map[string]string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(e.bins, svc), args...)
	cmd.Env = nil
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if exit := (*exec.ExitError)(nil); errors.As(err, &exit) {
		return out.String(), exit.ExitCode()
	}
	require.NoError(t, err)
	return out.String(), 0
}

// setVars makes svc's next start use vars over its environment.
func (e *Env) setVars(svc string, vars map[string]string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.opts.vars == nil {
		e.opts.vars = map[string]map[string]string{}
	}
	if e.opts.vars[svc] == nil {
		e.opts.vars[svc] = map[string]string{}
	}
	for k, v := range vars {
		e.opts.vars[svc][k] = v
	}
}

// newKeyB64 is a fresh AES-256 key in base64, as `goodgoctl keys new`
// prints it.
func newKeyB64(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	_, err := rand.Read(key)
	require.NoError(t, err)
	return base64.StdEncoding.EncodeToString(key)
}

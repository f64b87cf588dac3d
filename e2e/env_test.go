package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/goodgoctl/audit"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/tcpproxy"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// The four services with a database of their own (the relay reads the
// outboxes of the first three).
const (
	svcOrder        = "order"
	svcPayment      = "payment"
	svcInventory    = "inventory"
	svcOrchestrator = "orchestrator"
	svcRelay        = "outbox-relay"
)

// redisURL is the local Redis every service uses (their default).
const redisURL = "redis://127.0.0.1:6379/0"

// Timeouts of starting a binary: a -race build that creates and migrates
// its database on a loaded 2-core machine takes a few seconds.
const (
	startTimeout = 90 * time.Second
	readyTimeout = 60 * time.Second
)

// envOptions tunes one environment.
type envOptions struct {
	// race selects the -race builds (tests) or the plain ones (benchmark).
	race bool
	// failpoints selects binaries built with the tag failpoints, armed by
	// GOODGO_FAILPOINTS in vars (crash_test.go).
	failpoints bool
	// vars are extra environment variables per binary (Services names),
	// "*" for every binary; they win over the environment's own.
	vars map[string]map[string]string
	// proxies puts a TCP proxy (Env.Proxy) between the orchestrator and
	// each service it calls, and one in front of the broker, which
	// advertises it: every Kafka client, the relay and the orchestrator,
	// reaches the broker through it (faults_test.go).
	proxies bool
	// privateRedis runs a Redis server of the environment's own
	// (Env.Redis) that the test may stop, in place of the shared one.
	privateRedis bool
	// privatePostgres runs the services' databases on a PostgreSQL server
	// of the environment's own (Env.PG, TLS only) that the test may crash.
	privatePostgres bool
	// pgSettings are postgresql.conf lines for the private server.
	pgSettings []string
}

// Proxy names of Env.Proxy besides the services': the broker's front.
const proxyBroker = "broker"

// Env is one complete system on this machine: the development Kafka broker
// in this process, fresh databases, a Redis key prefix of its own and the
// five binaries wired to each other, plus gRPC clients and read-only pools
// on the services' databases (tests may read them; services never do).
// Binaries can be killed, stopped, paused and restarted: a restarted binary
// gets its databases and its gRPC port back, so its peers reach it again.
type Env struct {
	tb     testing.TB
	opts   envOptions
	bins   string
	Broker *broker.Broker
	// PKI holds the environment's CA, the binaries' certificates and the
	// token issuer; the binaries run in production mode with them.
	PKI *authtest.PKI
	// shoppers are the customers orders are placed for, each with a token;
	// operator and admin are tokens with those roles.
	shoppers        []shopper
	nextShopper     atomic.Uint64
	operator, admin string
	adminInvOnce    sync.Once
	adminInv        inventoryv1.InventoryServiceClient
	// dbURLs are the services' databases as the test server's superuser;
	// the binaries connect as their own roles (env).
	dbURLs map[string]string
	// idemPrefix starts every idempotency key of this environment in Redis.
	idemPrefix string
	// redisURL is the Redis of the services: the shared one, or Redis's.
	redisURL string
	// Redis and PG are the environment's own servers (envOptions), nil
	// when it uses the shared ones.
	Redis *redisServer
	PG    *pgtest.TLSServer
	// Proxy holds the proxies of envOptions.proxies by the name of what
	// they front: svcOrder, svcPayment, svcInventory (as the orchestrator
	// reaches them) and proxyBroker.
	Proxy map[string]*tcpproxy.Proxy

	mu       sync.Mutex
	procs    map[string]*Process
	grpcAddr map[string]string // the address a binary listened on first
	httpAddr map[string]string

	Orders    orderv1.OrderServiceClient
	Payments  paymentv1.PaymentServiceClient
	Inventory inventoryv1.InventoryServiceClient
	Sagas     orchestratorv1.SagaServiceClient
	// DB are the test's own pools on the services' databases.
	DB map[string]*pgxpool.Pool

	// baseline is each SKU's available + reserved stock when the
	// environment started or the test last set the stock: what "initial
	// available" means in the stock invariant.
	baselineMu sync.Mutex
	baseline   map[string]int64

	// auditClients are the auditor's operator connections (Audit).
	auditOnce    sync.Once
	auditClients audit.Clients
}

// NewEnv starts an environment and stops it, dropping its databases and
// Redis keys, when tb ends.
func NewEnv(tb testing.TB, opts envOptions) *Env {
	tb.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	e := &Env{
		tb:         tb,
		opts:       opts,
		bins:       buildWith(tb, variant{race: opts.race, failpoints: opts.failpoints}),
		idemPrefix: "e2e:" + suffix + ":",
		procs:      map[string]*Process{},
		grpcAddr:   map[string]string{},
		httpAddr:   map[string]string{},
		DB:         map[string]*pgxpool.Pool{},
		PKI:        authtest.New(tb),
		redisURL:   redisURL,
		Proxy:      map[string]*tcpproxy.Proxy{},
	}
	// Per-environment user ids: rate limits are per user in the shared
	// Redis, so one environment's audit must not spend the next one's
	// operator budget.
	e.operator = e.PKI.Token("e2e-operator-"+suffix, caller.RoleOperator)
	e.admin = e.PKI.Token("e2e-admin-"+suffix, caller.RoleAdmin)
	for range shoppers {
		id := uuid.NewString()
		e.shoppers = append(e.shoppers, shopper{id: id, token: e.PKI.Token(id)})
	}
	// Cleanups run last-registered first: Redis keys and databases go after
	// the processes (registered later, by Start) are killed.
	tb.Cleanup(e.deleteRedisKeys)
	// The binaries create and migrate their databases as an owner that is
	// not a superuser (as on a managed PostgreSQL), and serve as their own
	// roles (README "Database roles").
	server := pgtest.ServerURL()
	if opts.privatePostgres {
		// One environment holds about 40 connections, more while crashed
		// pools reconnect.
		e.PG = pgtest.StartTLSServer(tb, pgtest.MaxConnections(200), pgtest.Settings(opts.pgSettings...))
		e.PG.EnsureOwner(tb)
		server = e.PG.URL("postgres")
	} else {
		pgtest.EnsureOwner(tb)
	}
	e.dbURLs = databases(tb, server, suffix, svcOrder, svcPayment, svcInventory, svcOrchestrator)
	if opts.privateRedis {
		e.Redis = startRedis(tb)
		e.redisURL = e.Redis.URL()
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bcfg := broker.Config{Addr: "127.0.0.1:0"}
	if opts.proxies {
		px := tcpproxy.Listen(tb)
		bcfg.AdvertisedAddr = px.Addr()
		e.Proxy[proxyBroker] = px
	}
	br, err := broker.Start(ctx, bcfg)
	require.NoError(tb, err)
	tb.Cleanup(br.Close)
	e.Broker = br
	if px := e.Proxy[proxyBroker]; px != nil {
		px.Forward(br.ListenAddr())
	}

	// Inventory and payment have no peers; order needs inventory (its
	// catalog), the orchestrator all three; the relay only the databases.
	for _, s := range []string{svcInventory, svcPayment, svcOrder, svcOrchestrator, svcRelay} {
		if s == svcOrchestrator && opts.proxies {
			for _, peer := range []string{svcOrder, svcPayment, svcInventory} {
				e.Proxy[peer] = tcpproxy.Start(tb, e.Addr(peer))
			}
		}
		e.start(s, "")
	}

	for _, s := range []string{svcOrder, svcPayment, svcInventory, svcOrchestrator} {
		pool, err := pgxpool.New(context.Background(), withParams(e.dbURLs[s], "pool_max_conns=4"))
		require.NoError(tb, err)
		tb.Cleanup(pool.Close)
		e.DB[s] = pool
	}
	// Users' connections: Orders calls carry the token of the call's
	// shopper; the others an operator's by default.
	e.Orders = orderv1.NewOrderServiceClient(e.conn(svcOrder))
	e.Payments = paymentv1.NewPaymentServiceClient(e.conn(svcPayment, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator))))
	e.Inventory = inventoryv1.NewInventoryServiceClient(e.conn(svcInventory, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator))))
	e.Sagas = orchestratorv1.NewSagaServiceClient(e.conn(svcOrchestrator, grpc.WithPerRPCCredentials(grpcclient.Bearer(e.operator))))
	e.baseline = e.readStock(ctx)
	return e
}

// env is the environment of binary svc: production mode, with the
// environment's certificates and token issuer.
func (e *Env) env(svc string) map[string]string {
	v := e.PKI.Env(svc)
	maps.Copy(v, map[string]string{
		"GRPC_ADDR":              "127.0.0.1:0",
		"HTTP_ADDR":              "127.0.0.1:0",
		"REDIS_URL":              e.redisURL,
		"IDEMPOTENCY_KEY_PREFIX": e.idemPrefix,
		"LOG_LEVEL":              "info",
		"KAFKA_BROKERS":          e.Broker.Addr(),
	})
	switch svc {
	case svcRelay:
		v["OUTBOX_DATABASE_URLS"] = pgtest.AsRole(e.dbURLs[svcOrder], roleRelay) + "," +
			pgtest.AsRole(e.dbURLs[svcPayment], roleRelay) + "," + pgtest.AsRole(e.dbURLs[svcInventory], roleRelay)
		// Published rows stay, so the invariants can compare every outbox
		// row with what reached Kafka.
		v["OUTBOX_RETENTION"] = "24h"
		v["RELAY_ID"] = "e2e-relay"
	default:
		v["DATABASE_URL"] = pgtest.AsRole(e.dbURLs[svc], "goodgo_"+svc)
		v["MIGRATE_DATABASE_URL"] = pgtest.AsRole(e.dbURLs[svc], pgtest.Owner)
	}
	e.mu.Lock()
	switch svc {
	case svcOrder:
		v["INVENTORY_ADDR"] = e.grpcAddr[svcInventory]
	case svcOrchestrator:
		for name, peer := range map[string]string{"ORDER_ADDR": svcOrder, "PAYMENT_ADDR": svcPayment, "INVENTORY_ADDR": svcInventory} {
			v[name] = e.grpcAddr[peer]
			if px := e.Proxy[peer]; px != nil {
				v[name] = px.Addr()
			}
		}
	}
	e.mu.Unlock()
	for _, scope := range []string{"*", svc} {
		for k, x := range e.opts.vars[scope] {
			v[k] = x
		}
	}
	return v
}

// start runs binary svc (on grpcAddr when not empty) and waits until it is
// ready: its gRPC health service SERVING and its /readyz 200.
func (e *Env) start(svc, grpcAddr string) *Process {
	e.tb.Helper()
	vars := e.env(svc)
	if grpcAddr != "" {
		vars["GRPC_ADDR"] = grpcAddr
	}
	p := StartBinary(e.tb, e.bins, svc, vars)
	addr := p.LogValue(e.tb, "grpc server listening", "addr", startTimeout)
	httpAddr := p.LogValue(e.tb, "ops http server listening", "addr", startTimeout)
	e.mu.Lock()
	e.procs[svc] = p
	if _, ok := e.grpcAddr[svc]; !ok {
		e.grpcAddr[svc] = addr
	}
	e.httpAddr[svc] = httpAddr
	e.mu.Unlock()
	e.waitReady(svc, addr, httpAddr)
	return p
}

func (e *Env) waitReady(svc, grpcAddr, httpAddr string) {
	e.tb.Helper()
	hc := healthpb.NewHealthClient(e.PKI.Dial(grpcAddr))
	ok := poll(readyTimeout, 25*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false
		}
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	require.True(e.tb, ok, "%s not ready within %s", svc, readyTimeout)
}

// Addr is svc's gRPC address (the first one, which restarts keep).
func (e *Env) Addr(svc string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.grpcAddr[svc]
}

// HTTPAddr is svc's ops HTTP address (its current process's).
func (e *Env) HTTPAddr(svc string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.httpAddr[svc]
}

// conn is an end user's client connection to svc, closed at cleanup.
func (e *Env) conn(svc string, opts ...grpc.DialOption) *grpc.ClientConn {
	return e.PKI.Dial(e.Addr(svc), opts...)
}

// Proc is the current process of svc.
func (e *Env) Proc(svc string) *Process {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.procs[svc]
}

// Kill sends SIGKILL to svc and waits until it is gone.
func (e *Env) Kill(svc string) {
	e.tb.Helper()
	p := e.Proc(svc)
	require.NoError(e.tb, p.Signal(syscall.SIGCONT)) // a paused process dies too; harmless otherwise
	require.NoError(e.tb, p.Signal(syscall.SIGKILL))
	_, err := p.Wait(10 * time.Second)
	require.NoError(e.tb, err)
}

// Pause freezes svc (SIGSTOP): its sockets stay open and accept requests,
// which nobody answers, as with a hung process or a long GC pause.
func (e *Env) Pause(svc string) {
	e.tb.Helper()
	require.NoError(e.tb, e.Proc(svc).Signal(syscall.SIGSTOP))
}

// Resume lets a paused svc run again (SIGCONT).
func (e *Env) Resume(svc string) {
	e.tb.Helper()
	require.NoError(e.tb, e.Proc(svc).Signal(syscall.SIGCONT))
}

// Restart starts svc again after Kill, on its former gRPC address and with
// its databases, and waits until it is ready.
func (e *Env) Restart(svc string) {
	e.tb.Helper()
	require.True(e.tb, e.Proc(svc).Exited(), "%s is still running", svc)
	e.mu.Lock()
	addr := e.grpcAddr[svc]
	e.mu.Unlock()
	e.start(svc, addr)
}

// deleteRedisKeys removes the environment's idempotency keys from the
// shared Redis (a private one ends with the environment).
func (e *Env) deleteRedisKeys() {
	if e.Redis != nil {
		return
	}
	opt, err := redis.ParseURL(e.redisURL)
	if err != nil {
		e.tb.Errorf("redis url: %v", err)
		return
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, e.idemPrefix+"*", 1000).Iterator()
	var batch []string
	flush := func() {
		if len(batch) > 0 {
			if err := rdb.Del(ctx, batch...).Err(); err != nil {
				e.tb.Errorf("delete redis keys: %v", err)
			}
			batch = batch[:0]
		}
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			flush()
		}
	}
	flush()
	if err := iter.Err(); err != nil {
		e.tb.Errorf("scan redis keys: %v", err)
	}
}

// databases names one fresh database per service ("goodgo_test_e2e_<suffix>_
// <svc>") for the binaries to create themselves, and drops them (WITH
// (FORCE): a killed binary's connections may linger) when tb ends.
func databases(tb testing.TB, serverURL, suffix string, services ...string) map[string]string {
	tb.Helper()
	server, err := url.Parse(serverURL)
	require.NoError(tb, err)
	urls := make(map[string]string)
	var names []string
	for _, s := range services {
		name := pgtest.Prefix + "e2e_" + suffix + "_" + strings.ReplaceAll(s, "-", "_")
		names = append(names, name)
		if s == svcOrder {
			// The order binary creates its read database (CQRS) beside its
			// own, named with "_read".
			names = append(names, name+"_read")
		}
		u := *server
		u.Path = "/" + name
		urls[s] = u.String()
	}
	tb.Cleanup(func() { dropDatabases(tb, serverURL, names) })
	return urls
}

func dropDatabases(tb testing.TB, serverURL string, names []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, serverURL)
	if err != nil {
		tb.Errorf("drop test databases: %v", err)
		return
	}
	defer pool.Close()
	for _, name := range names {
		if _, err := pool.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %q WITH (FORCE)", name)); err != nil {
			tb.Errorf("drop %s: %v", name, err)
		}
	}
}

// withParams adds query parameters to a database URL.
func withParams(dbURL, params string) string {
	if strings.Contains(dbURL, "?") {
		return dbURL + "&" + params
	}
	return dbURL + "?" + params
}

// poll calls cond every interval until it returns true (true) or timeout
// has passed (false).
func poll(timeout, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/security"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// runStartOrder is the order the binaries start in: each after the ones it
// calls (order reads inventory's catalog; the orchestrator calls all
// three), the relay last. They stop in the reverse order.
var runStartOrder = []string{"inventory", "payment", "order", "orchestrator", "outbox-relay"}

// runPorts are the default ports of each binary (README, Configuration).
var runPorts = map[string][2]int{
	"order": {50051, 9101}, "payment": {50052, 9102}, "inventory": {50053, 9103},
	"orchestrator": {50054, 9104}, "outbox-relay": {50055, 9105},
}

type runOptions struct {
	bin, dev, logs  string
	rate            float64
	randomPorts     bool
	postgres, redis string
	dbPrefix        string
	idemPrefix      string
	startTimeout    time.Duration
	stopTimeout     time.Duration
	outcomeTimeout  time.Duration
	kafkaAddr       string
}

// runChild is one process started by `goodgoctl run`.
type runChild struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // the exit, once done is closed

	mu     sync.Mutex
	values map[string]string // "msg/key" -> value of the first such log line
	seen   chan struct{}     // closed and replaced on every recorded value
}

// runAll is `goodgoctl run`: the development broker, the five binaries and
// the load generator as child processes on this machine, in development
// mode against the local PostgreSQL and Redis, until SIGINT or SIGTERM.
func runAll(args []string, stdout, stderr io.Writer) error {
	var o runOptions
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.bin, "bin", "bin", "directory of the built binaries (make build): the five services, devbroker, loadgen")
	fs.StringVar(&o.dev, "dir", defaultDir(), "directory of the development credentials (created or renewed, as `dev init`)")
	fs.StringVar(&o.logs, "logs", ".run", "directory of each process's log file (<name>.log)")
	fs.Float64Var(&o.rate, "rate", 2, "orders per second of the demo client (loadgen); 0 runs none")
	fs.BoolVar(&o.randomPorts, "random-ports", false, "listen on free ports instead of the defaults (50051-50055, 9101-9105, 9092)")
	fs.StringVar(&o.postgres, "postgres", "127.0.0.1:5432", "the PostgreSQL server (user postgres, trust authentication)")
	fs.StringVar(&o.redis, "redis", "redis://127.0.0.1:6379/0", "the Redis server")
	fs.StringVar(&o.dbPrefix, "db-prefix", "goodgo_", "databases are <prefix><service> (and <prefix>order_read)")
	fs.StringVar(&o.idemPrefix, "idempotency-prefix", "idem:", "IDEMPOTENCY_KEY_PREFIX of the services")
	fs.DurationVar(&o.startTimeout, "start-timeout", 2*time.Minute, "how long each process may take to become ready")
	fs.DurationVar(&o.stopTimeout, "stop-timeout", 15*time.Second, "how long each process may take to stop before it is killed")
	fs.DurationVar(&o.outcomeTimeout, "outcome-timeout", time.Minute, "how long the first order may take to reach its outcome")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("run: unexpected arguments %q", fs.Args())
	}
	o.kafkaAddr = "127.0.0.1:9092"
	if o.randomPorts {
		o.kafkaAddr = "127.0.0.1:0"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return o.run(ctx, stdout)
}

func (o runOptions) run(ctx context.Context, out io.Writer) (err error) {
	paths := config.DevPaths{Dir: o.dev}
	if err := security.InitDev(paths, security.Services, nil); err != nil {
		return fmt.Errorf("run: development credentials: %w", err)
	}
	if err := os.MkdirAll(o.logs, 0o750); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	pem, err := os.ReadFile(paths.CA())
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)

	var children []*runChild
	// Whatever happens, every process started is stopped before return:
	// the newest first, so the load generator and the relay go before the
	// services and the broker they use.
	defer func() {
		for i := len(children) - 1; i >= 0; i-- {
			began := time.Now()
			if stopErr := children[i].stop(o.stopTimeout); stopErr != nil {
				fmt.Fprintf(out, "  %-13s %v\n", children[i].name, stopErr)
				continue
			}
			fmt.Fprintf(out, "  %-13s stopped (%s)\n", children[i].name, time.Since(began).Round(time.Millisecond))
		}
		fmt.Fprintln(out, "stopped: every process has exited")
	}()
	exited := make(chan *runChild, 16)
	start := func(name, binary string, env map[string]string, args ...string) (*runChild, error) {
		c, err := o.startChild(name, binary, env, args...)
		if err != nil {
			return nil, err
		}
		children = append(children, c)
		go func() { <-c.done; exited <- c }()
		return c, nil
	}

	fmt.Fprintf(out, "starting the development broker and the five binaries (logs in %s/)\n", o.logs)
	broker, err := start("devbroker", "devbroker", map[string]string{"KAFKA_ADDR": o.kafkaAddr})
	if err != nil {
		return err
	}
	kafka, err := broker.await(ctx, "listening", "addr", o.startTimeout)
	if err != nil {
		return err
	}

	grpcAddr, httpAddr := map[string]string{}, map[string]string{}
	for _, svc := range runStartOrder {
		env := o.serviceEnv(svc, kafka, grpcAddr)
		c, err := start(svc, svc, env)
		if err != nil {
			return err
		}
		if grpcAddr[svc], err = c.await(ctx, "grpc server listening", "addr", o.startTimeout); err != nil {
			return err
		}
		if httpAddr[svc], err = c.await(ctx, "ops http server listening", "addr", o.startTimeout); err != nil {
			return err
		}
		if err := waitReady(ctx, c, roots, grpcAddr[svc], httpAddr[svc], o.startTimeout); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-13s ready: gRPC %s, metrics http://%s/metrics\n", svc, grpcAddr[svc], httpAddr[svc])
	}

	orderID, err := o.firstOrder(ctx, out, paths, roots, grpcAddr)
	if err != nil {
		return err
	}
	if o.rate > 0 {
		_, err := start("loadgen", "loadgen", nil,
			"-order-addr", grpcAddr["order"], "-orchestrator-addr", grpcAddr["orchestrator"],
			"-dev-dir", o.dev, "-rate", strconv.FormatFloat(o.rate, 'f', -1, 64),
			"-duration", "8760h", "-quiet")
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "demo client: loadgen places %s orders/s (log %s)\n", strconv.FormatFloat(o.rate, 'f', -1, 64), filepath.Join(o.logs, "loadgen.log"))
	}
	printWhereToLook(out, o, kafka, grpcAddr, httpAddr, orderID)

	select {
	case <-ctx.Done():
		fmt.Fprintln(out, "interrupted: stopping every process")
		return nil
	case c := <-exited:
		return fmt.Errorf("run: %s exited (%w); see %s", c.name, c.exit(), filepath.Join(o.logs, c.name+".log"))
	}
}

// serviceEnv is the environment of binary svc: development mode, the
// local servers, its own database and its peers' addresses.
func (o runOptions) serviceEnv(svc, kafka string, grpcAddr map[string]string) map[string]string {
	env := map[string]string{
		"GOODGO_MODE":            "development",
		"GOODGO_DEV_DIR":         o.dev,
		"KAFKA_BROKERS":          kafka,
		"REDIS_URL":              o.redis,
		"IDEMPOTENCY_KEY_PREFIX": o.idemPrefix,
		"GRPC_ADDR":              "127.0.0.1:0",
		"HTTP_ADDR":              "127.0.0.1:0",
	}
	if !o.randomPorts {
		env["GRPC_ADDR"] = "127.0.0.1:" + strconv.Itoa(runPorts[svc][0])
		env["HTTP_ADDR"] = "127.0.0.1:" + strconv.Itoa(runPorts[svc][1])
	}
	dbURL := func(role, db string) string {
		return "postgres://" + role + "@" + o.postgres + "/" + db + "?sslmode=disable"
	}
	switch svc {
	case "outbox-relay":
		var urls []string
		for _, s := range []string{"order", "payment", "inventory"} {
			urls = append(urls, dbURL(config.RoleName("relay"), o.dbPrefix+s))
		}
		env["OUTBOX_DATABASE_URLS"] = strings.Join(urls, ",")
	default:
		// Development mode migrates as postgres, then serves as the
		// service's own role.
		env["DATABASE_URL"] = dbURL(config.RoleName(svc), o.dbPrefix+svc)
	}
	switch svc {
	case "order":
		env["INVENTORY_ADDR"] = grpcAddr["inventory"]
	case "orchestrator":
		env["ORDER_ADDR"] = grpcAddr["order"]
		env["PAYMENT_ADDR"] = grpcAddr["payment"]
		env["INVENTORY_ADDR"] = grpcAddr["inventory"]
	}
	return env
}

// startChild starts binary from o.bin with env added to this process's
// environment, its output in <logs>/<name>.log. The child stays in this
// process's group (Ctrl-C in a terminal reaches it too) and is killed if
// this process dies first.
func (o runOptions) startChild(name, binary string, env map[string]string, args ...string) (*runChild, error) {
	path, err := filepath.Abs(filepath.Join(o.bin, binary))
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("run: %w (build the binaries first: make run builds them)", err)
	}
	logFile, err := os.Create(filepath.Join(o.logs, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	// Not tied to run's context: a signal stops the children one by one
	// (stop), not all at once with SIGKILL.
	cmd := exec.CommandContext(context.Background(), path, args...) //nolint:gosec // G204: the project's own binaries, from the directory the developer names
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v) // the last of duplicate keys wins
	}
	cmd.Stderr = logFile
	stdoutPipe, err := cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("run: %w", err)
	}
	// Pdeathsig: a runner killed with SIGKILL leaves no child behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("run: start %s: %w", name, err)
	}
	c := &runChild{name: name, cmd: cmd, done: make(chan struct{}), values: map[string]string{}, seen: make(chan struct{})}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		c.copyLog(stdoutPipe, logFile)
	}()
	go func() {
		<-copied // Wait closes the pipe: read it to the end first
		c.err = cmd.Wait()
		_ = logFile.Close()
		close(c.done)
	}()
	return c, nil
}

// copyLog writes each line of r to w and records the string fields of the
// JSON lines by "msg/field", for await.
func (c *runChild) copyLog(r io.Reader, w io.Writer) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		_, _ = w.Write(append(line, '\n'))
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil {
			continue
		}
		msg, _ := rec["msg"].(string)
		c.mu.Lock()
		for k, v := range rec {
			if s, ok := v.(string); ok {
				if _, dup := c.values[msg+"/"+k]; !dup {
					c.values[msg+"/"+k] = s
				}
			}
		}
		close(c.seen)
		c.seen = make(chan struct{})
		c.mu.Unlock()
	}
	_, _ = io.Copy(w, r) // a line longer than the buffer: keep the rest
}

// await returns the field key of the first log line msg.
func (c *runChild) await(ctx context.Context, msg, key string, timeout time.Duration) (string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		v, ok := c.values[msg+"/"+key]
		seen := c.seen
		c.mu.Unlock()
		if ok {
			return v, nil
		}
		select {
		case <-seen:
		case <-c.done:
			return "", fmt.Errorf("run: %s exited before logging %q (%w)", c.name, msg, c.exit())
		case <-deadline.C:
			return "", fmt.Errorf("run: %s did not log %q within %s", c.name, msg, timeout)
		case <-ctx.Done():
			return "", fmt.Errorf("run: interrupted while starting %s", c.name)
		}
	}
}

// exit is how the process ended, once done is closed: its error, or
// "exit status 0" (a child of run must not end by itself).
func (c *runChild) exit() error {
	if c.err == nil {
		return errors.New("exit status 0")
	}
	return c.err
}

// stop sends SIGTERM, waits up to timeout, then SIGKILL.
func (c *runChild) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return nil
	case <-time.After(timeout):
	}
	_ = c.cmd.Process.Kill()
	<-c.done
	return fmt.Errorf("did not stop within %s: killed", timeout)
}

// waitReady polls the binary's gRPC health service and its /readyz until
// both say ready.
func waitReady(ctx context.Context, c *runChild, roots *x509.CertPool, grpcAddr, httpAddr string, timeout time.Duration) error {
	conn, err := grpcclient.DialUser(grpcAddr, roots)
	if err != nil {
		return fmt.Errorf("run: %s: %w", c.name, err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ready := func() bool {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		r, err := hc.Check(cctx, &healthpb.HealthCheckRequest{})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			return false
		}
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, "http://"+httpAddr+"/readyz", nil)
		if err != nil {
			return false
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	deadline := time.Now().Add(timeout)
	for !ready() {
		if time.Now().After(deadline) {
			return fmt.Errorf("run: %s not ready within %s (see http://%s/readyz)", c.name, timeout, httpAddr)
		}
		select {
		case <-c.done:
			return fmt.Errorf("run: %s exited while starting (%w)", c.name, c.exit())
		case <-ctx.Done():
			return fmt.Errorf("run: interrupted while starting %s", c.name)
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// firstOrder places one order as a new customer, follows it to its outcome
// and prints the order and its saga, looked up by the order id.
func (o runOptions) firstOrder(ctx context.Context, out io.Writer, paths config.DevPaths, roots *x509.CertPool, grpcAddr map[string]string) (string, error) {
	iss, err := security.DevIssuer(paths)
	if err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	customer := newUUID()
	tok, err := iss.Mint(customer, nil, time.Hour)
	if err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	orderConn, err := grpcclient.DialUser(grpcAddr["order"], roots, grpc.WithPerRPCCredentials(grpcclient.Bearer(tok)))
	if err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	defer orderConn.Close()
	sagaConn, err := grpcclient.DialUser(grpcAddr["orchestrator"], roots, grpc.WithPerRPCCredentials(grpcclient.Bearer(tok)))
	if err != nil {
		return "", fmt.Errorf("run: %w", err)
	}
	defer sagaConn.Close()
	orders := orderv1.NewOrderServiceClient(orderConn)
	sagas := orchestratorv1.NewSagaServiceClient(sagaConn)

	octx, cancel := context.WithTimeout(ctx, o.outcomeTimeout)
	defer cancel()
	placed, err := orders.PlaceOrder(metadata.AppendToOutgoingContext(octx, "idempotency-key", "run-"+newUUID()),
		&orderv1.PlaceOrderRequest{
			CustomerId:    customer,
			Items:         []*orderv1.OrderItemInput{{Sku: "SKU-KEYBOARD", Quantity: 1}},
			PaymentMethod: "tok_visa",
			ShippingAddress: &orderv1.Address{Name: "Alice", Line1: "1 Main St", City: "Springfield",
				PostalCode: "12345", CountryCode: "US"},
		})
	if err != nil {
		return "", fmt.Errorf("run: PlaceOrder: %w", err)
	}
	id := placed.GetOrder().GetOrderId()
	fmt.Fprintf(out, "first order %s placed: %s\n", id, placed.GetOrder().GetStatus())
	for {
		got, err := orders.GetOrder(octx, &orderv1.GetOrderRequest{OrderId: id})
		if err == nil && got.GetOrder().GetStatus() != orderv1.OrderStatus_ORDER_STATUS_PENDING {
			list, lerr := sagas.ListSagas(octx, &orchestratorv1.ListSagasRequest{CorrelationId: id})
			if lerr == nil && len(list.GetSagas()) > 0 && terminalSaga(list.GetSagas()[0].GetState()) {
				s := list.GetSagas()[0]
				fmt.Fprintf(out, "first order %s: %s; its saga %s: %s (%d steps)\n",
					id, got.GetOrder().GetStatus(), s.GetSagaId(), s.GetState(), len(s.GetSteps()))
				return id, nil
			}
		}
		select {
		case <-octx.Done():
			if err != nil {
				return "", fmt.Errorf("run: order %s has no outcome within %s: %w", id, o.outcomeTimeout, err)
			}
			return "", fmt.Errorf("run: order %s has no outcome within %s", id, o.outcomeTimeout)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func terminalSaga(s orchestratorv1.SagaState) bool {
	return s == orchestratorv1.SagaState_SAGA_STATE_COMPLETED || s == orchestratorv1.SagaState_SAGA_STATE_COMPENSATED ||
		s == orchestratorv1.SagaState_SAGA_STATE_PARKED
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func printWhereToLook(out io.Writer, o runOptions, kafka string, grpcAddr, httpAddr map[string]string, orderID string) {
	ca := config.DevPaths{Dir: o.dev}.CA()
	fmt.Fprintf(out, `
everything is running (Ctrl-C stops it all):
  kafka (devbroker)  %s
`, kafka)
	for _, svc := range runStartOrder {
		fmt.Fprintf(out, "  %-18s gRPC %s   http://%s/metrics  /readyz  /healthz\n", svc, grpcAddr[svc], httpAddr[svc])
	}
	fmt.Fprintf(out, `
an order and its saga, by order id (grpcurl: go install github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.4):
  TOKEN=$(go run ./goodgoctl dev token -sub ops-1 -roles operator)
  grpcurl -cacert %[1]s -H "authorization: Bearer $TOKEN" -d '{"order_id": "%[2]s"}' %[3]s goodgo.order.v1.OrderService/GetOrder
  grpcurl -cacert %[1]s -H "authorization: Bearer $TOKEN" -d '{"correlation_id": "%[2]s"}' %[4]s goodgo.orchestrator.v1.SagaService/ListSagas
every invariant at once:
  go run ./goodgoctl audit -token $TOKEN -order %[3]s -payment %[5]s -inventory %[6]s -orchestrator %[4]s
logs: %[7]s/<name>.log
`, ca, orderID, grpcAddr["order"], grpcAddr["orchestrator"], grpcAddr["payment"], grpcAddr["inventory"], o.logs)
}

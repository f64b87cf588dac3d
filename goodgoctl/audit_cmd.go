package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/goodgoctl/audit"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcclient"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	paymentv1 "github.com/goodgo/goodgo/proto/goodgo/payment/v1"
)

// errViolations makes main exit 1: the audit ran and found violations.
var errViolations = errors.New("invariants violated")

// auditFlags are `goodgoctl audit`'s settings.
type auditFlags struct {
	order, payment, inventory, orchestrator string
	token, tokenFile, caFile                string
	grace, timeout, interval                time.Duration
	metricsAddr                             string
	concurrency                             int
}

func parseAuditFlags(args []string, stderr io.Writer) (auditFlags, error) {
	var f auditFlags
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.order, "order", "127.0.0.1:50051", "order service address")
	fs.StringVar(&f.payment, "payment", "127.0.0.1:50052", "payment service address")
	fs.StringVar(&f.inventory, "inventory", "127.0.0.1:50053", "inventory service address")
	fs.StringVar(&f.orchestrator, "orchestrator", "127.0.0.1:50054", "orchestrator address")
	fs.StringVar(&f.token, "token", os.Getenv("GOODGO_TOKEN"), "bearer token of an operator (default $GOODGO_TOKEN)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file holding the operator's bearer token (re-read before each run)")
	fs.StringVar(&f.caFile, "cacert", config.DevPaths{Dir: defaultDir()}.CA(), "CA certificate the services' certificates chain to")
	fs.DurationVar(&f.grace, "grace", time.Minute, "how long past its deadline a saga may still be compensating")
	fs.DurationVar(&f.timeout, "timeout", 5*time.Minute, "bound of one audit")
	fs.DurationVar(&f.interval, "interval", 0, "audit every interval and export metrics (0: once, exit 1 on violations)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "127.0.0.1:9106", "with -interval: where /metrics and /healthz are served")
	fs.IntVar(&f.concurrency, "concurrency", 8, "orders read at once")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	switch {
	case fs.NArg() > 0:
		return f, fmt.Errorf("audit: unexpected argument %q", fs.Arg(0))
	case f.token == "" && f.tokenFile == "":
		return f, errors.New("audit: -token, -token-file or GOODGO_TOKEN is required (an operator's token: goodgoctl dev token -sub ops -roles operator)")
	case f.interval < 0 || f.grace < 0 || f.timeout <= 0 || f.concurrency < 1:
		return f, errors.New("audit: -interval and -grace must not be negative, -timeout and -concurrency must be positive")
	}
	return f, nil
}

// runAudit is `goodgoctl audit`: one audit printing its violations, or with
// -interval an audit every interval, its outcome on /metrics, until SIGINT
// or SIGTERM.
func runAudit(args []string, stdout, stderr io.Writer) error {
	f, err := parseAuditFlags(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return auditLoop(ctx, f, stdout, stderr, nil)
}

// auditLoop runs the audits of f. ready, if not nil, gets the metrics
// server's address once it listens (tests).
func auditLoop(ctx context.Context, f auditFlags, stdout, stderr io.Writer, ready func(addr string)) error {
	pem, err := os.ReadFile(f.caFile)
	if err != nil {
		return fmt.Errorf("audit: -cacert: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("audit: -cacert %s holds no certificate", f.caFile)
	}
	tok := &tokenSource{token: f.token, file: f.tokenFile}
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	dial := func(addr string) (*grpc.ClientConn, error) {
		c, err := grpcclient.DialUser(addr, roots, grpc.WithPerRPCCredentials(tok))
		if err == nil {
			conns = append(conns, c)
		}
		return c, err
	}
	var clients audit.Clients
	for _, d := range []struct {
		addr string
		set  func(*grpc.ClientConn)
	}{
		{f.order, func(c *grpc.ClientConn) {
			// The order service hosts the read model too (CQRS): the audit
			// holds it to the write side.
			clients.Orders, clients.Views = orderv1.NewOrderServiceClient(c), orderv1.NewOrderQueryServiceClient(c)
		}},
		{f.payment, func(c *grpc.ClientConn) { clients.Payments = paymentv1.NewPaymentServiceClient(c) }},
		{f.inventory, func(c *grpc.ClientConn) { clients.Inventory = inventoryv1.NewInventoryServiceClient(c) }},
		{f.orchestrator, func(c *grpc.ClientConn) { clients.Sagas = orchestratorv1.NewSagaServiceClient(c) }},
	} {
		c, err := dial(d.addr)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		d.set(c)
	}
	once := func() (*audit.Report, error) {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		if err := tok.load(); err != nil {
			return nil, err
		}
		s, err := audit.Collect(ctx, clients, audit.CollectOptions{Concurrency: f.concurrency})
		if err != nil {
			return nil, err
		}
		return audit.Check(s, f.grace), nil
	}
	if f.interval == 0 {
		r, err := once()
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		printReport(stdout, r)
		if len(r.Violations) > 0 {
			return errViolations
		}
		return nil
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m, err := audit.NewMetrics(reg)
	if err != nil {
		return err
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", f.metricsAddr)
	if err != nil {
		return fmt.Errorf("audit: -metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	stopped := false // Serve returned (and said why)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		if !stopped {
			if err := <-served; !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(stderr, "audit: metrics server: %v\n", err)
			}
		}
	}()
	fmt.Fprintf(stderr, "auditing every %s; metrics on http://%s/metrics\n", f.interval, ln.Addr())
	if ready != nil {
		ready(ln.Addr().String())
	}
	tick := time.NewTicker(f.interval)
	defer tick.Stop()
	for {
		start := time.Now()
		r, err := once()
		end := time.Now()
		m.Observe(r, err, end.Sub(start), end)
		if err != nil {
			fmt.Fprintf(stderr, "%s audit failed: %v\n", end.UTC().Format(time.RFC3339), err)
		} else {
			printReport(stdout, r)
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-served:
			stopped = true
			return fmt.Errorf("audit: metrics server: %w", err)
		case <-tick.C:
		}
	}
}

// printReport prints each violation on a line, then a summary.
func printReport(w io.Writer, r *audit.Report) {
	at := r.Snapshot.TakenAt.UTC().Format(time.RFC3339)
	for _, v := range r.Violations {
		fmt.Fprintf(w, "%s VIOLATION %s\n", at, v)
	}
	stock := "stock counters compared"
	if !r.Snapshot.Quiescent {
		stock = "stock counters not compared (sagas running)"
	}
	fmt.Fprintf(w, "%s audited %d orders (%d in flight, %d products; %s): %d violations\n",
		at, r.Audited, r.InFlight, len(r.Snapshot.Products), stock, len(r.Violations))
}

// tokenSource sends the operator's bearer token, re-read from its file
// before each audit when it comes from one (tokens are short-lived).
type tokenSource struct {
	token, file string
	mu          sync.Mutex
	current     string
}

func (t *tokenSource) load() error {
	cur := t.token
	if t.file != "" {
		b, err := os.ReadFile(t.file)
		if err != nil {
			return fmt.Errorf("-token-file: %w", err)
		}
		cur = strings.TrimSpace(string(b))
	}
	t.mu.Lock()
	t.current = cur
	t.mu.Unlock()
	return nil
}

func (t *tokenSource) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return map[string]string{"authorization": "Bearer " + t.current}, nil
}

func (*tokenSource) RequireTransportSecurity() bool { return true }

// Package inventorytest is an in-process stand-in for the inventory service,
// the order service's neighbour, for tests and benchmarks only (imported
// from _test.go files alone, like net/http/httptest): a real gRPC server on
// a loopback port, with the inventory service's certificate from the test's
// PKI, that answers GetProducts from a fixed catalog. Everything else is
// Unimplemented.
package inventorytest

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/mtls"
	commonv1 "github.com/goodgo/goodgo/proto/goodgo/common/v1"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// Server is a running fake. Its setters are safe to call while it serves.
type Server struct {
	inventoryv1.UnimplementedInventoryServiceServer

	addr  string
	calls atomic.Int64

	mu       sync.Mutex
	products map[string]*inventoryv1.Product
	err      error
	delay    time.Duration
	pageSize int
	callers  []string
}

// Product returns a catalog entry with the given price.
func Product(sku, name, currency string, minor, available int64) *inventoryv1.Product {
	return &inventoryv1.Product{
		Sku:       sku,
		Name:      name,
		UnitPrice: &commonv1.Money{CurrencyCode: currency, AmountMinor: minor},
		Available: available,
	}
}

// Start serves a fake holding products on 127.0.0.1 until the test ends,
// as the inventory service of pki.
func Start(tb testing.TB, pki *authtest.PKI, products ...*inventoryv1.Product) *Server {
	tb.Helper()
	s := &Server{products: make(map[string]*inventoryv1.Product)}
	for _, p := range products {
		s.products[p.GetSku()] = p
	}
	lis, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("inventorytest: listen: %v", err)
	}
	s.addr = lis.Addr().String()
	gs := grpc.NewServer(grpc.Creds(pki.Kit("inventory").TLS.ServerCredentials()))
	inventoryv1.RegisterInventoryServiceServer(gs, s)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	tb.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return s
}

// Addr is the server's "host:port".
func (s *Server) Addr() string { return s.addr }

// Calls is the number of GetProducts calls served so far.
func (s *Server) Calls() int64 { return s.calls.Load() }

// Callers returns the verified service of every call so far ("" for a
// caller without a certificate).
func (s *Server) Callers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.callers)
}

// FailWith makes every call fail with err (a status error); nil heals.
func (s *Server) FailWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

// Delay makes every call wait d (or until the call's context ends) first.
func (s *Server) Delay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// PageSize makes responses return at most n products each, with a page
// token for the rest; 0 means everything in one page.
func (s *Server) PageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pageSize = n
}

// GetProducts returns the requested products in request order. Like the
// real service, it answers NotFound naming the first unknown SKU by its
// request index, `skus[i]: "SKU" not found`, and returns nothing else. The
// page token is the index of the next requested SKU.
func (s *Server) GetProducts(ctx context.Context, req *inventoryv1.GetProductsRequest) (*inventoryv1.GetProductsResponse, error) {
	s.calls.Add(1)
	p, _ := mtls.PeerFrom(ctx)
	s.mu.Lock()
	s.callers = append(s.callers, p.Service)
	err, delay, pageSize := s.err, s.delay, s.pageSize
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	if err != nil {
		return nil, err
	}
	start := 0
	if req.GetPageToken() != "" {
		if start, err = strconv.Atoi(req.GetPageToken()); err != nil {
			return nil, status.Error(codes.InvalidArgument, "page_token: malformed")
		}
	}
	resp := &inventoryv1.GetProductsResponse{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sku := range req.GetSkus() {
		if _, ok := s.products[sku]; !ok {
			return nil, status.Errorf(codes.NotFound, "skus[%d]: %q not found", i, sku)
		}
	}
	for i := start; i < len(req.GetSkus()); i++ {
		if pageSize > 0 && len(resp.Products) == pageSize {
			resp.NextPageToken = strconv.Itoa(i)
			break
		}
		resp.Products = append(resp.Products, s.products[req.GetSkus()[i]])
	}
	return resp, nil
}

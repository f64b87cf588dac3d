package generator

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// fakeInventory keeps stock with a version per SKU. Its first AdjustStock
// is rate limited and its second finds the version stale (a reservation
// came between), as the real one may.
type fakeInventory struct {
	inventoryv1.UnimplementedInventoryServiceServer
	mu      sync.Mutex
	stock   map[string]int64
	version map[string]int
	adjusts int
	keys    map[string]bool
}

func (f *fakeInventory) GetStock(_ context.Context, req *inventoryv1.GetStockRequest) (*inventoryv1.GetStockResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &inventoryv1.GetStockResponse{Product: &inventoryv1.Product{
		Sku: req.GetSku(), Available: f.stock[req.GetSku()], VersionToken: string(rune('a' + f.version[req.GetSku()])),
	}}, nil
}

func (f *fakeInventory) AdjustStock(ctx context.Context, req *inventoryv1.AdjustStockRequest) (*inventoryv1.AdjustStockResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if first(md, "authorization") != "Bearer admin-token" || first(md, "idempotency-key") == "" {
		return nil, status.Error(codes.PermissionDenied, "admins only, with a key")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.adjusts++
	f.keys[first(md, "idempotency-key")] = true
	switch f.adjusts {
	case 1:
		st, _ := status.New(codes.ResourceExhausted, "rate limit").WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(0)})
		return nil, st.Err()
	case 2:
		f.version[req.GetSku()]++
		return nil, status.Error(codes.Aborted, "version_token: stale")
	}
	if req.GetVersionToken() != string(rune('a'+f.version[req.GetSku()])) {
		return nil, status.Error(codes.Aborted, "version_token: stale")
	}
	f.stock[req.GetSku()] = req.GetAvailable()
	f.version[req.GetSku()]++
	return &inventoryv1.AdjustStockResponse{}, nil
}

func TestRestockSetsEverySKU(t *testing.T) {
	t.Parallel()
	f := &fakeInventory{stock: map[string]int64{"SKU-A": 3, "SKU-B": 500}, version: map[string]int{}, keys: map[string]bool{}}
	conn := serveFake(t, func(srv *grpc.Server) { inventoryv1.RegisterInventoryServiceServer(srv, f) })

	require.NoError(t, Restock(context.Background(), conn, "admin-token", []string{"SKU-A", "SKU-B"}, 500))
	require.Equal(t, map[string]int64{"SKU-A": 500, "SKU-B": 500}, f.stock)
	require.Equal(t, 3, f.adjusts, "limited, stale, done; SKU-B already had 500")
	require.Len(t, f.keys, 2, "a new read is a new request with a new key")

	require.ErrorContains(t, Restock(context.Background(), conn, "user-token", []string{"SKU-A"}, 7), "restock SKU-A")
}

package generator

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/goodgo/goodgo/platform/authz"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/idempotency"
	inventoryv1 "github.com/goodgo/goodgo/proto/goodgo/inventory/v1"
)

// Restock sets the available units of every SKU in skus to available,
// through the inventory service's AdjustStock as the admin whose token is
// adminToken (read, then adjust with the read's version token; a token
// made stale by a concurrent reservation is read again). Repeated runs
// drain the seeded catalog: without it good orders end CANCELLED for want
// of stock. It waits out rate limits, which are tight for admin updates.
func Restock(ctx context.Context, inventory grpc.ClientConnInterface, adminToken string, skus []string, available int64) error {
	c := inventoryv1.NewInventoryServiceClient(inventory)
	ctx = metadata.AppendToOutgoingContext(ctx, authz.BearerMetadataKey, "Bearer "+adminToken)
	for _, sku := range skus {
		if err := restockOne(ctx, c, sku, available); err != nil {
			return fmt.Errorf("restock %s: %w", sku, err)
		}
	}
	return nil
}

func restockOne(ctx context.Context, c inventoryv1.InventoryServiceClient, sku string, available int64) error {
	for attempt := 1; ; attempt++ {
		var g *inventoryv1.GetStockResponse
		err := withinRateLimit(ctx, func() (err error) {
			g, err = c.GetStock(ctx, &inventoryv1.GetStockRequest{Sku: sku})
			return err
		})
		if err != nil {
			return err
		}
		if g.GetProduct().GetAvailable() == available {
			return nil
		}
		key := fmt.Sprintf("loadgen-restock-%s-%d", sku, time.Now().UnixNano())
		actx := metadata.AppendToOutgoingContext(ctx, idempotency.MetadataKey, key)
		err = withinRateLimit(ctx, func() error {
			_, err := c.AdjustStock(actx, &inventoryv1.AdjustStockRequest{
				Sku: sku, Available: available, VersionToken: g.GetProduct().GetVersionToken(), Reason: "loadgen restock",
			})
			return err
		})
		if status.Code(err) == codes.Aborted && attempt < 10 {
			continue // stale: a reservation changed the row since the read
		}
		return err
	}
}

// withinRateLimit calls call again, after the wait its ResourceExhausted
// error asks for, until it is not rate limited or ctx ends.
func withinRateLimit(ctx context.Context, call func() error) error {
	for {
		err := call()
		wait, limited := grpcclient.RetryDelay(err)
		if !limited || !sleep(ctx, wait) {
			return err
		}
	}
}

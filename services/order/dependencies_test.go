package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/metadata"

	"github.com/goodgo/goodgo/devbroker/broker"
	"github.com/goodgo/goodgo/platform/authtest"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/idempotency"
	"github.com/goodgo/goodgo/platform/pgtest"
	"github.com/goodgo/goodgo/platform/tcpproxy"
	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
	"github.com/goodgo/goodgo/services/order/internal/inventorytest"
)

// TestDatabaseAndRedisOutagesMidRun cuts PostgreSQL, then Redis, under the
// running service (issue 10: losing a dependency mid-run must never stop a
// binary, and readiness must say what is missing). Without PostgreSQL the
// service is not ready and says why; without Redis it stays ready, listed
// as degraded, and still takes orders; each time it recovers on its own.
// order, payment and inventory share this behaviour (bootstrap.OpenDomain).
func TestDatabaseAndRedisOutagesMidRun(t *testing.T) {
	t.Parallel()
	dbURL, _ := pgtest.NewDatabase(t, nil)
	pg := tcpproxy.Start(t, "127.0.0.1:5432")
	rd := tcpproxy.Start(t, "127.0.0.1:6379")
	u, err := url.Parse(pgtest.AsRole(dbURL, "goodgo_order"))
	require.NoError(t, err)
	u.Host = pg.Addr()
	svc := startService(t, dbURL, map[string]string{"DATABASE_URL": u.String(), "REDIS_URL": "redis://" + rd.Addr() + "/0"},
		inventorytest.Product("SKU-1", "Widget", "USD", 1999, 10))
	place := func() error {
		user := uuid.NewString()
		ctx := metadata.AppendToOutgoingContext(authtest.AsUser(context.Background(), svc.pki.Token(user)), idempotency.MetadataKey, uuid.NewString())
		_, err := orderv1.NewOrderServiceClient(svc.pki.Dial(svc.GRPCAddr)).PlaceOrder(ctx, &orderv1.PlaceOrderRequest{
			CustomerId:      user,
			Items:           []*orderv1.OrderItemInput{{Sku: "SKU-1", Quantity: 1}},
			ShippingAddress: &orderv1.Address{Name: "Ada", Line1: "1 Main St", City: "Boston", PostalCode: "02110", CountryCode: "US"},
			PaymentMethod:   "tok_visa",
		})
		return err
	}
	svc.WaitReadyz(t, http.StatusOK, "ok\n")
	require.NoError(t, place())

	for _, outage := range []struct {
		name       string
		proxy      *tcpproxy.Proxy
		readyCode  int
		readyBody  string
		placeWorks bool // whether PlaceOrder succeeds during the outage
	}{
		{"postgres", pg, http.StatusServiceUnavailable, "not ready: postgres (connection refused)\n", false},
		{"redis", rd, http.StatusOK, "ok\ndegraded: redis (connection refused)\n", true},
	} {
		outage.proxy.Cut()
		svc.WaitReadyz(t, outage.readyCode, outage.readyBody)
		if outage.placeWorks {
			require.NoError(t, place(), "PlaceOrder runs without %s", outage.name)
		} else {
			require.Error(t, place(), "no order without %s", outage.name)
		}
		outage.proxy.Restore()
		svc.WaitReadyz(t, http.StatusOK, "ok\n")
		require.NoError(t, place(), "orders again once %s is back", outage.name)
	}
	svc.stop(t) // run was serving all along and stops cleanly
}

// TestProjectorJoinsOnceItsTopicsExist starts the service with the read
// side's projector against a broker that has none of its topics yet, as a
// cluster whose topics an init step creates later: readiness names them
// (degraded: only the view lags), and once they exist the projector's
// group is assigned every partition of the three topics. A group reader
// made at start would have joined with no partition and kept none.
func TestProjectorJoinsOnceItsTopicsExist(t *testing.T) {
	b, err := broker.Start(context.Background(), broker.Config{Addr: "127.0.0.1:0", Topics: []string{"unrelated"}, Partitions: 2})
	require.NoError(t, err)
	t.Cleanup(b.Close)
	const group = "order-view-test"
	dbURL, _ := pgtest.NewDatabase(t, nil)
	svc := startService(t, dbURL, map[string]string{"PROJECTOR": "true", "KAFKA_BROKERS": b.Addr(), "PROJECTOR_GROUP": group})

	require.Eventually(t, func() bool {
		code, body := svc.Readyz(t)
		return code == http.StatusOK && strings.Contains(body, "degraded: kafka (missing topic")
	}, 30*time.Second, 20*time.Millisecond, "readiness names the missing topics")

	client := &kafka.Client{Addr: kafka.TCP(b.Addr())}
	var topics []kafka.TopicConfig
	for _, topic := range event.Topics {
		topics = append(topics, kafka.TopicConfig{Topic: topic, NumPartitions: 2, ReplicationFactor: 1})
	}
	resp, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: topics})
	require.NoError(t, err)
	for _, topic := range event.Topics {
		require.NoError(t, resp.Errors[topic])
	}
	svc.WaitReadyz(t, http.StatusOK, "ok\n")

	assigned := func() int {
		groups, err := client.DescribeGroups(t.Context(), &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
		if err != nil || len(groups.Groups) != 1 {
			return 0
		}
		n := 0
		for _, m := range groups.Groups[0].Members {
			for _, a := range m.MemberAssignments.Topics {
				if slices.Contains(event.Topics, a.Topic) {
					n += len(a.Partitions)
				}
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return assigned() == 2*len(event.Topics) }, 30*time.Second, 50*time.Millisecond,
		"the projector's group holds every partition of its topics (assigned %d)", assigned())
	svc.stop(t)
}

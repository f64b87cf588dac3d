package main

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/tcpproxy"
	orchestratorv1 "github.com/goodgo/goodgo/proto/goodgo/orchestrator/v1"
)

// fetchFailed is the consumer's log line when Kafka cannot be read.
const fetchFailed = "kafka fetch failed; retrying"

// brokerBehindProxy runs an in-process Kafka broker that clients reach only
// through a proxy: it advertises the proxy's address, so cutting the proxy
// cuts every connection while the broker keeps its data.
func brokerBehindProxy(t *testing.T) *tcpproxy.Proxy {
	t.Helper()
	px := tcpproxy.Listen(t)
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	adv, err := net.ResolveTCPAddr("tcp", px.Addr())
	require.NoError(t, err)
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, event.TopicOrder),
		kfake.ListenFn(func(string, string) (net.Listener, error) { return advertising{ln, adv}, nil }))
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	px.Forward(ln.Addr().String())
	return px
}

// advertising is a listener whose Addr, which kfake advertises to clients,
// is another address.
type advertising struct {
	net.Listener
	addr net.Addr
}

func (a advertising) Addr() net.Addr { return a.addr }

// waitLogged waits until msg has been logged more than n times.
func (b *bundle) waitLogged(t *testing.T, msg string, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		return strings.Count(b.logs.String(), `"msg":"`+msg+`"`) > n
	}, 60*time.Second, 20*time.Millisecond, "%q never logged more than %d times; logs:\n%s", msg, n, b.logs.String())
}

// placeAndComplete publishes an order and waits for its saga to complete.
func (b *bundle) placeAndComplete(t *testing.T) {
	t.Helper()
	b.runSaga(t, order("tok_ok", "SKU-1"), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)
}

// setupOnBroker runs the orchestrator with px, a brokerBehindProxy, as its
// Kafka broker.
func setupOnBroker(t *testing.T, px *tcpproxy.Proxy) *bundle {
	t.Helper()
	b := setup(t, map[string]string{"KAFKA_BROKERS": px.Addr()})
	b.broker = px.Addr()
	return b
}

// restoreAndComplete restores the broker behind px, waits until the
// orchestrator is ready again and requires that a saga then completes (the
// logs are shown when it does not).
func (b *bundle) restoreAndComplete(t *testing.T, px *tcpproxy.Proxy) {
	t.Helper()
	px.Restore()
	b.WaitReadyz(t, http.StatusOK, "ok\n")
	defer func() {
		if t.Failed() {
			t.Log(b.logs.String())
		}
	}()
	b.placeAndComplete(t)
}

// Issue 10: the orchestrator exited at start when Kafka was not reachable
// yet (its consumer's first fetch failed and run returned). It now starts,
// is not ready while the broker is missing, says so, keeps retrying, and
// consumes once the broker appears, without a restart.
func TestStartsWithoutKafkaAndConsumesWhenItAppears(t *testing.T) {
	px := brokerBehindProxy(t)
	px.Cut() // the broker is not there yet: connections are refused
	b := setupOnBroker(t, px)

	b.WaitReadyz(t, http.StatusServiceUnavailable, "not ready: kafka (connection refused)\n")
	b.waitLogged(t, fetchFailed, 0) // where the old orchestrator exited
	code, body := b.Readyz(t)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: kafka (connection refused)\n", body, "still up, still saying why")

	b.restoreAndComplete(t, px)
}

// Issue 10: 2 s after the broker went away mid-run, the orchestrator
// exited and orders stayed PENDING until someone restarted it. Now it
// stays up, not ready, and resumes consuming when the broker returns.
func TestKafkaOutageMidRunDoesNotStopTheOrchestrator(t *testing.T) {
	px := brokerBehindProxy(t)
	b := setupOnBroker(t, px)
	b.WaitReadyz(t, http.StatusOK, "ok\n")
	b.placeAndComplete(t)

	failures := strings.Count(b.logs.String(), `"msg":"`+fetchFailed+`"`)
	px.Cut()
	b.WaitReadyz(t, http.StatusServiceUnavailable, "not ready: kafka (connection refused)\n")
	b.waitLogged(t, fetchFailed, failures)
	b.waitLogged(t, fetchFailed, failures+1) // and again: it keeps trying
	code, _ := b.Readyz(t)
	require.Equal(t, http.StatusServiceUnavailable, code)

	b.restoreAndComplete(t, px)
}

// Losing PostgreSQL or Redis mid-run does not stop the orchestrator either:
// without PostgreSQL it is not ready (no saga can move), without Redis it
// stays ready but says it is degraded (only RetrySaga and AbortSaga need
// it); each recovers on its own and sagas complete again.
func TestDatabaseAndRedisOutagesMidRun(t *testing.T) {
	pg := tcpproxy.Start(t, "127.0.0.1:5432")
	rd := tcpproxy.Start(t, "127.0.0.1:6379")
	b := setup(t, map[string]string{dbAddrVar: pg.Addr(), "REDIS_URL": "redis://" + rd.Addr() + "/0"})
	b.WaitReadyz(t, http.StatusOK, "ok\n")
	b.placeAndComplete(t)

	pg.Cut()
	b.WaitReadyz(t, http.StatusServiceUnavailable, "not ready: postgres (connection refused)\n")
	o := order("tok_ok", "SKU-1")
	b.publish(t, uuid.New(), o) // waits in Kafka, or in the consumer's retries
	pg.Restore()
	b.WaitReadyz(t, http.StatusOK, "ok\n")
	b.sagaOf(t, o.GetOrderId(), orchestratorv1.SagaState_SAGA_STATE_COMPLETED)

	rd.Cut()
	b.WaitReadyz(t, http.StatusOK, "ok\ndegraded: redis (connection refused)\n")
	b.placeAndComplete(t)
	rd.Restore()
	b.WaitReadyz(t, http.StatusOK, "ok\n")
}

// Issue 12: with a real Kafka nothing created the topics, and the
// orchestrator's first metadata request created the order topic as a side
// effect. Now a missing topic is named at start and by /readyz, the
// orchestrator stays up without creating it, and consumes once an init step
// creates it.
func TestMissingTopicIsNamedUntilCreated(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1)) // no topic, no auto-creation
	require.NoError(t, err)
	t.Cleanup(cluster.Close)
	addr := cluster.ListenAddrs()[0]
	b := setup(t, map[string]string{"KAFKA_BROKERS": addr})
	b.broker = addr

	const notReady = "not ready: kafka (missing topic " + event.TopicOrder + ")\n"
	b.WaitReadyz(t, http.StatusServiceUnavailable, notReady)
	b.waitLogged(t, "kafka topics missing: not ready until they are created", 0)
	require.Contains(t, b.logs.String(), `"topics":["`+event.TopicOrder+`"]`)
	code, body := b.Readyz(t)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, notReady, body, "still up, still naming the topic")

	client := &kafka.Client{Addr: kafka.TCP(addr)}
	resp, err := client.CreateTopics(t.Context(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{
		{Topic: event.TopicOrder, NumPartitions: 3, ReplicationFactor: 1},
	}})
	require.NoError(t, err)
	require.NoError(t, resp.Errors[event.TopicOrder])
	b.WaitReadyz(t, http.StatusOK, "ok\n")
	defer func() {
		if t.Failed() {
			t.Log(b.logs.String())
		}
	}()
	b.placeAndComplete(t)
}

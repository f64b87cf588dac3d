package relay

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's Prometheus series. outbox_events_total is counted
// by the writers (platform/outbox).
type metrics struct {
	// outbox_published_total{topic}: events the broker acknowledged.
	published *prometheus.CounterVec
	// outbox_failed_events_total{topic,reason}: failed publish attempts
	// (reason "broker", retried), attempts stopped at a key this replica
	// lacks ("unknown_key", held) and parked events (rejected, too_large,
	// decrypt).
	failed *prometheus.CounterVec
	// outbox_publish_lag_seconds{topic}: acknowledgement time minus
	// occurred-at, per event (the dashboards' P95/P99).
	publishLag *prometheus.HistogramVec
	// outbox_processing_lag_seconds{database}: age of the oldest pending
	// event, sampled; it grows while the broker is down (the seed's
	// OutboxProcessingLag alert, > 300).
	lag *prometheus.GaugeVec
	// outbox_table_size{database,state}: rows by state (pending,
	// published, parked), sampled.
	tableSize *prometheus.GaugeVec
	// outbox_lanes_owned{database}: lanes this replica leases.
	lanesOwned *prometheus.GaugeVec
	// outbox_lanes_held{database,key_id}: owned lanes stopped at an event
	// sealed under a key this replica does not hold (an operator alert:
	// the key is missing from OUTBOX_KEYS).
	lanesHeld *prometheus.GaugeVec
	// outbox_lane_handovers_total{database,reason}: lanes this replica
	// released while running: balance (a replica joined), broker (it
	// cannot publish), unknown_key (a replica holding the key takes it).
	handovers *prometheus.CounterVec
	// outbox_deleted_total{database}: published rows deleted by the janitor.
	deleted *prometheus.CounterVec
	// outbox_relay_rows_total{database,operation}: rows the relay read,
	// marked published, recorded a failed attempt on, parked or deleted —
	// the outbox's access pattern, beside the writers' outbox_events_total.
	// Nothing else may touch the table (README "Database roles").
	rows *prometheus.CounterVec
}

// Operations of outbox_relay_rows_total.
const (
	opRead      = "read"
	opPublished = "published"
	opFailed    = "failed"
	opParked    = "parked"
	opDeleted   = "deleted"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total",
			Help: "Outbox events published to Kafka and acknowledged by all in-sync replicas.",
		}, []string{"topic"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_failed_events_total",
			Help: `Outbox events that failed to publish: reason="broker" counts failed attempts (retried); reason="unknown_key" counts attempts stopped at a key id this replica does not hold (held, not parked); rejected, too_large and decrypt count parked events (an operator must act).`,
		}, []string{"topic", "reason"}),
		publishLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outbox_publish_lag_seconds",
			Help:    "Time from an outbox event's occurred-at to the broker's acknowledgement.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"topic"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outbox_processing_lag_seconds",
			Help: "Age of the oldest unpublished (and not parked) outbox event, 0 when none; sampled.",
		}, []string{"database"}),
		tableSize: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outbox_table_size",
			Help: "Rows in the outbox table by state (pending, published, parked); sampled.",
		}, []string{"database", "state"}),
		lanesOwned: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outbox_lanes_owned",
			Help: "Outbox lanes leased by this relay replica.",
		}, []string{"database"}),
		lanesHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outbox_lanes_held",
			Help: "Outbox lanes this relay replica leases but does not publish past an event sealed under a key id it does not hold (OUTBOX_KEYS lacks it): not parked, waiting for a replica that holds the key.",
		}, []string{"database", "key_id"}),
		handovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_lane_handovers_total",
			Help: "Outbox lanes this relay replica released while running, by reason: balance (a replica joined), broker (it cannot publish), unknown_key (it lacks the key of the lane's next event).",
		}, []string{"database", "reason"}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_deleted_total",
			Help: "Published outbox rows deleted by the janitor after the retention.",
		}, []string{"database"}),
		rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_relay_rows_total",
			Help: "Outbox rows the relay accessed, per database and operation: read (selected to publish), published (marked), " +
				"failed (a failed attempt recorded), parked, deleted (janitor). The outbox's access pattern; writers' inserts are outbox_events_total.",
		}, []string{"database", "operation"}),
	}
	if reg == nil {
		return m, nil
	}
	if err := errors.Join(
		reg.Register(m.published), reg.Register(m.failed), reg.Register(m.publishLag),
		reg.Register(m.lag), reg.Register(m.tableSize), reg.Register(m.lanesOwned), reg.Register(m.lanesHeld),
		reg.Register(m.handovers), reg.Register(m.deleted),
		reg.Register(m.rows),
	); err != nil {
		return nil, fmt.Errorf("relay: register metrics: %w", err)
	}
	return m, nil
}

package relay

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/event"
	"github.com/goodgo/goodgo/platform/failpoint"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
)

// Reasons, the reason label of outbox_failed_events_total: "broker" and
// "unknown_key" count attempts that are retried, the others parked events.
const (
	reasonBroker     = "broker"      // transient: the batch is retried
	reasonUnknownKey = "unknown_key" // sealed under a key id this replica lacks: the lane is held
	reasonRejected   = "rejected"    // the broker refused the message for good: parked
	reasonTooLarge   = "too_large"   // larger than the batch limit: parked before sending
	reasonDecrypt    = "decrypt"     // PII payload that fails authentication: parked
)

// columns are the outbox columns the relay reads, in outbox.Record order.
const columns = `id, event_id, lane, topic, aggregate_type, aggregate_id, aggregate_version,
event_type, content_type, payload, key_id, traceparent, tracestate, occurred_at, attempts`

// pendingSQL[k] selects the lowest pending ids of k lanes ($2 … $k+1), at
// most $1 rows. Each lane is its own branch reading the work-queue index
// (lane, id) in order, and PostgreSQL merges the branches (Merge Append), so
// a batch reads about $1 rows however large the backlog. The simpler
// "lane = ANY($lanes) ORDER BY id" cannot use the index for the order and
// sorts every pending row of the lanes on each batch.
var pendingSQL = func() []string {
	out := make([]string, outbox.Lanes+1)
	for k := 1; k <= outbox.Lanes; k++ {
		var b strings.Builder
		b.WriteString("SELECT " + columns + " FROM (")
		for i := range k {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&b, "(SELECT %s FROM outbox WHERE lane = $%d AND published_at IS NULL AND parked_at IS NULL ORDER BY id LIMIT $1)", columns, i+2)
		}
		b.WriteString(") pending ORDER BY id LIMIT $1")
		out[k] = b.String()
	}
	return out
}()

// recordOverhead and batchOverhead over-estimate what Kafka adds to a
// record and to a record batch, so that a cut batch fits one produce
// request per partition.
const (
	recordOverhead = 64
	batchOverhead  = 128
)

// traceContext is the W3C propagator: the rows and the headers hold W3C
// trace context whatever the process-wide propagator is.
var traceContext = propagation.TraceContext{}

// worker publishes the lanes l with l mod Workers == index, one batch at a
// time: claim, publish, wait for the acks, mark.
type worker struct {
	d      *database
	index  int
	pub    Publisher
	wakeCh chan struct{}
	// started and finished count batch cycles; the lease manager hands a
	// lane over only when every cycle that may include it has finished.
	started, finished atomic.Uint64
}

func newWorker(d *database, index int) *worker {
	return &worker{d: d, index: index, pub: d.r.opts.NewPublisher(), wakeCh: make(chan struct{}, 1)}
}

// wake signals the worker without blocking; signals coalesce.
func (w *worker) wake() {
	select {
	case w.wakeCh <- struct{}{}:
	default:
	}
}

func (w *worker) run(ctx context.Context) {
	defer func() { _ = w.pub.Close() }()
	cfg := w.d.r.cfg
	b := w.d.r.newBackoff()
	poll := time.NewTimer(cfg.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		more, err := w.cycle(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			w.d.health.fail(err)
			if backoff.Sleep(ctx, b.Next()) != nil {
				return
			}
			continue
		}
		b.Reset()
		if more {
			continue
		}
		poll.Reset(cfg.PollInterval)
		select {
		case <-ctx.Done():
			return
		case <-w.wakeCh:
		case <-poll.C:
		}
	}
}

// item is one row on its way to Kafka.
type item struct {
	rec  outbox.Record
	msg  kafka.Message
	span trace.Span
}

// cycle publishes one batch of the worker's lanes. more reports that rows
// may be left (the batch was full or cut), so the worker should not wait.
func (w *worker) cycle(ctx context.Context) (more bool, err error) {
	w.started.Add(1)
	defer func() {
		w.finished.Add(1)
		w.d.lanes.cycleDone()
	}()

	lanes := w.d.lanes.active(w.index)
	if len(lanes) == 0 {
		return false, nil
	}
	cfg := w.d.r.cfg
	recs, err := w.pending(ctx, lanes, cfg.BatchSize)
	if err != nil {
		return false, err
	}
	w.d.health.ok()
	w.d.r.metrics.rows.WithLabelValues(w.d.name, opRead).Add(float64(len(recs)))
	if len(recs) == 0 {
		for _, lane := range lanes {
			w.d.lanes.unhold(lane)
		}
		return false, nil
	}
	more = len(recs) == cfg.BatchSize

	items := make([]item, 0, len(recs))
	size := batchOverhead
	// held: lanes stopped at an event sealed under a key id this replica
	// does not hold; their later rows wait behind it. opened: lanes whose
	// first pending row opened, so they are not (or no longer) held.
	var held, opened map[int16]bool
	for i := range recs {
		r := recs[i]
		if held[r.Lane] {
			continue
		}
		if err := outbox.Decrypt(w.d.r.opts.Keys, &r); err != nil {
			if missingKey(err) {
				// Not this event's fault: a replica holding the key (a
				// rolling rotation) can publish it. Hold the lane.
				if held == nil {
					held = map[int16]bool{}
				}
				held[r.Lane] = true
				w.d.r.metrics.failed.WithLabelValues(r.Topic, reasonUnknownKey).Inc()
				w.d.lanes.holdLane(r, err)
				continue
			}
			w.park(ctx, item{rec: r}, reasonDecrypt, err)
			continue
		}
		if opened == nil {
			opened = map[int16]bool{}
		}
		opened[r.Lane] = true
		it := w.newItem(ctx, r)
		n := estimate(it.msg)
		if n+batchOverhead > cfg.MaxBatchBytes {
			w.park(ctx, it, reasonTooLarge, fmt.Errorf("message of about %d bytes exceeds the %d-byte limit", n, cfg.MaxBatchBytes))
			continue
		}
		if size+n > cfg.MaxBatchBytes {
			// Cut: the rest waits for the next batch, so that each
			// partition's share is one produce request, appended by Kafka
			// all or nothing (an aggregate's events never half-succeed).
			it.span.End()
			more = true
			break
		}
		size += n
		items = append(items, it)
	}
	// A held lane resumes once its first pending row opens, or once it has
	// no pending row left (deleted by an operator, resealed and published).
	for _, lane := range lanes {
		if !held[lane] && (opened[lane] || len(recs) < cfg.BatchSize && !inBatch(recs, lane)) {
			w.d.lanes.unhold(lane)
		}
	}
	w.publish(ctx, lanes, items)
	return more, nil
}

// missingKey reports a payload sealed under a key id this replica does not
// hold (or no keyring at all): another replica may hold it.
func missingKey(err error) bool {
	return errors.Is(err, keyring.ErrUnknownKey) || errors.Is(err, outbox.ErrNoKeyring)
}

func inBatch(recs []outbox.Record, lane int16) bool {
	for i := range recs {
		if recs[i].Lane == lane {
			return true
		}
	}
	return false
}

// pending reads up to limit pending rows of lanes, in id order.
func (w *worker) pending(ctx context.Context, lanes []int16, limit int) ([]outbox.Record, error) {
	args := make([]any, 0, len(lanes)+1)
	args = append(args, limit)
	for _, l := range lanes {
		args = append(args, l)
	}
	rows, err := w.d.pool.Query(ctx, pendingSQL[len(lanes)], args...)
	if err != nil {
		return nil, fmt.Errorf("select pending: %w", err)
	}
	defer rows.Close()
	var recs []outbox.Record // not of cap limit: most batches are a few rows
	for rows.Next() {
		var r outbox.Record
		if err := rows.Scan(&r.ID, &r.EventID, &r.Lane, &r.Topic, &r.AggregateType, &r.AggregateID,
			&r.AggregateVersion, &r.EventType, &r.ContentType, &r.Payload, &r.KeyID, &r.Traceparent,
			&r.Tracestate, &r.OccurredAt, &r.Attempts); err != nil {
			return nil, fmt.Errorf("select pending: %w", err)
		}
		recs = append(recs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("select pending: %w", err)
	}
	return recs, nil
}

// newItem starts the row's outbox.publish span, a child of the writer's
// span, and builds the Kafka message whose trace headers name that span.
func (w *worker) newItem(ctx context.Context, r outbox.Record) item {
	carrier := propagation.MapCarrier{}
	if r.Traceparent != "" {
		carrier[event.HeaderTraceparent] = r.Traceparent
		if r.Tracestate != "" {
			carrier[event.HeaderTracestate] = r.Tracestate
		}
	}
	parent := traceContext.Extract(ctx, carrier)
	sctx, span := w.d.r.tracer.Start(parent, "outbox.publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", r.Topic),
			attribute.String("messaging.message.id", r.EventID.String()),
			attribute.String("event.type", r.EventType),
			attribute.String("aggregate.id", r.AggregateID),
		))
	out := propagation.MapCarrier{}
	traceContext.Inject(sctx, out)

	headers := make([]kafka.Header, 0, 9)
	headers = append(headers,
		kafka.Header{Key: event.HeaderEventID, Value: []byte(r.EventID.String())},
		kafka.Header{Key: event.HeaderEventType, Value: []byte(r.EventType)},
		kafka.Header{Key: event.HeaderAggregateType, Value: []byte(r.AggregateType)},
		kafka.Header{Key: event.HeaderAggregateID, Value: []byte(r.AggregateID)},
		kafka.Header{Key: event.HeaderAggregateVersion, Value: strconv.AppendInt(nil, r.AggregateVersion, 10)},
		kafka.Header{Key: event.HeaderOccurredAt, Value: []byte(r.OccurredAt.UTC().Format(time.RFC3339Nano))},
		kafka.Header{Key: event.HeaderContentType, Value: []byte(r.ContentType)},
	)
	if tp := out.Get(event.HeaderTraceparent); tp != "" {
		headers = append(headers, kafka.Header{Key: event.HeaderTraceparent, Value: []byte(tp)})
		if ts := out.Get(event.HeaderTracestate); ts != "" {
			headers = append(headers, kafka.Header{Key: event.HeaderTracestate, Value: []byte(ts)})
		}
	}
	return item{
		rec:  r,
		span: span,
		msg: kafka.Message{
			Topic:   r.Topic,
			Key:     []byte(r.AggregateID),
			Value:   r.Payload,
			Headers: headers,
		},
	}
}

// estimate over-estimates the bytes m takes in a record batch.
func estimate(m kafka.Message) int {
	n := recordOverhead + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += 10 + len(h.Key) + len(h.Value)
	}
	return n
}

// publish sends items until each is acknowledged and marked, or parked, or
// the worker must give up: ctx is cancelled (shutdown) or a lane is no
// longer ours. A failed attempt is retried with backoff, in the same order;
// the acknowledged part of a partly failed attempt is marked at once.
func (w *worker) publish(ctx context.Context, lanes []int16, items []item) {
	// The write itself is not cancelled by shutdown: kafka-go would keep
	// sending in the background, and rows the broker acknowledged after we
	// stopped waiting would be published again by the next owner.
	wctx := context.WithoutCancel(ctx)
	b := w.d.r.newBackoff()
	// The batch is claimed (its lanes leased), nothing written yet.
	failpoint.Hit("outbox-relay.publish.mid-batch")
	for len(items) > 0 {
		err := w.pub.Publish(wctx, messages(items))
		if err == nil {
			w.published()
			w.mark(ctx, items)
			return
		}
		acked, rejected, failed := classify(err, items)
		if len(acked) > 0 {
			w.published()
		}
		w.mark(ctx, acked)
		if len(rejected) > 0 {
			failed = append(w.isolate(ctx, wctx, rejected), failed...)
			// isolate may leave rows of several aggregates; restore id
			// order so each aggregate's rows go out in order.
			sortByID(failed)
		}
		items = failed
		if len(items) == 0 {
			return
		}
		w.d.r.pub.failed(time.Now(), err)
		w.recordFailure(ctx, items, err)
		if !w.d.lanes.stillActive(lanes) {
			w.abandon(items, "lane handed over")
			return
		}
		if backoff.Sleep(ctx, b.Next()) != nil {
			w.abandon(items, "shutting down")
			return
		}
	}
}

// published records that the broker acknowledged a publish.
func (w *worker) published() {
	if failed := w.d.r.pub.ok(time.Now()); failed > 0 {
		w.d.log.Info("publishing works again", "failed_for", failed.Round(time.Millisecond).String())
	}
}

// isolate publishes messages the broker rejected for good one at a time,
// in order: a rejection of a whole partition batch may be due to one
// message, or to their sum. A message rejected alone is parked. At the
// first transient failure it stops and returns what is left, in order.
func (w *worker) isolate(ctx, wctx context.Context, items []item) (left []item) {
	for i, it := range items {
		err := w.pub.Publish(wctx, []kafka.Message{it.msg})
		switch {
		case err == nil:
			w.mark(ctx, []item{it})
		case permanent(firstError(err)):
			w.park(ctx, it, reasonRejected, firstError(err))
		default:
			return items[i:]
		}
	}
	return nil
}

// classify splits items by the outcome of one Publish: acknowledged,
// rejected for good, failed for now.
func classify(err error, items []item) (acked, rejected, failed []item) {
	var werrs kafka.WriteErrors
	if !errors.As(err, &werrs) || len(werrs) != len(items) {
		var tooLarge kafka.MessageTooLargeError
		if errors.As(err, &tooLarge) {
			// kafka-go refused the whole call before sending because one
			// message exceeds its batch bytes: isolate them all.
			return nil, items, nil
		}
		return nil, nil, items
	}
	for i, it := range items {
		switch e := werrs[i]; {
		case e == nil:
			acked = append(acked, it)
		case permanent(e):
			rejected = append(rejected, it)
		default:
			failed = append(failed, it)
		}
	}
	return acked, rejected, failed
}

// permanent reports broker errors that retrying the same message cannot
// fix. Everything else (network, leadership, unknown topic, timeouts) is
// retried until it works, with the lag metric showing the wait.
func permanent(err error) bool {
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		switch kerr {
		case kafka.MessageSizeTooLarge, kafka.RecordListTooLarge, kafka.InvalidRecord:
			return true
		}
	}
	var tooLarge kafka.MessageTooLargeError
	return errors.As(err, &tooLarge)
}

// firstError unwraps the error of a one-message Publish.
func firstError(err error) error {
	var werrs kafka.WriteErrors
	if errors.As(err, &werrs) && len(werrs) == 1 && werrs[0] != nil {
		return werrs[0]
	}
	return err
}

// mark records items as published (guarded by the lease) and ends their
// spans. A failed mark is retried a few times: the rows were published, and
// leaving them unmarked means publishing them again.
func (w *worker) mark(ctx context.Context, items []item) {
	if len(items) == 0 {
		return
	}
	// The broker acknowledged the rows; they are not marked yet.
	failpoint.Hit("outbox-relay.publish.after-publish")
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.rec.ID
	}
	mctx := context.WithoutCancel(ctx)
	b := w.d.r.newBackoff()
	var n int64
	var err error
	for attempt := 1; attempt <= 5; attempt++ {
		n, err = w.d.q.MarkPublished(mctx, outboxdb.MarkPublishedParams{Ids: ids, Owner: w.d.r.cfg.ID})
		if err == nil {
			break
		}
		w.d.health.fail(err)
		time.Sleep(b.Next()) // deliberately not ctx: the batch is acked and must be marked
	}
	now := time.Now()
	m := w.d.r.metrics
	m.rows.WithLabelValues(w.d.name, opPublished).Add(float64(n))
	for _, it := range items {
		m.published.WithLabelValues(it.rec.Topic).Inc()
		m.publishLag.WithLabelValues(it.rec.Topic).Observe(now.Sub(it.rec.OccurredAt).Seconds())
		it.span.End()
	}
	switch {
	case err != nil:
		w.d.log.Error("marking published rows failed; they will be published again", "rows", len(ids), "error", err.Error())
	case n < int64(len(ids)):
		w.d.log.Warn("lane lease lost before marking; another replica publishes these rows again",
			"rows", len(ids), "marked", n)
	}
}

// park takes a row out of the work queue for good, with its error.
func (w *worker) park(ctx context.Context, it item, reason string, cause error) {
	w.d.r.metrics.failed.WithLabelValues(it.rec.Topic, reason).Inc()
	msg := reason + ": " + cause.Error()
	if it.span != nil {
		it.span.RecordError(cause)
		it.span.SetStatus(codes.Error, msg)
		it.span.End()
	}
	n, err := w.d.q.ParkEvent(context.WithoutCancel(ctx), outboxdb.ParkEventParams{
		ID: it.rec.ID, Error: msg, Owner: w.d.r.cfg.ID,
	})
	if err != nil {
		// Not parked: the row is retried with the next batch.
		w.d.health.fail(err)
		return
	}
	w.d.r.metrics.rows.WithLabelValues(w.d.name, opParked).Add(float64(n))
	w.d.log.Error("outbox event parked: later events of its aggregate are published without it; an operator must resolve it",
		"event_id", it.rec.EventID.String(), "outbox_id", it.rec.ID, "topic", it.rec.Topic,
		"event_type", it.rec.EventType, "aggregate_id", it.rec.AggregateID,
		"aggregate_version", it.rec.AggregateVersion, "reason", reason, "error", cause.Error())
}

// recordFailure counts a failed attempt and keeps its error on the rows.
func (w *worker) recordFailure(ctx context.Context, items []item, cause error) {
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.rec.ID
		w.d.r.metrics.failed.WithLabelValues(it.rec.Topic, reasonBroker).Inc()
	}
	msg := cause.Error()
	if len(msg) > 1000 {
		msg = msg[:1000]
	}
	if err := w.d.q.RecordFailure(ctx, outboxdb.RecordFailureParams{Ids: ids, Error: msg}); err != nil {
		w.d.health.fail(err)
	} else {
		w.d.r.metrics.rows.WithLabelValues(w.d.name, opFailed).Add(float64(len(ids)))
	}
	w.d.log.Warn("publishing failed; retrying with backoff", "rows", len(items), "error", cause.Error())
}

// abandon ends the spans of rows left unpublished; they stay pending.
func (w *worker) abandon(items []item, why string) {
	for _, it := range items {
		it.span.SetStatus(codes.Error, why)
		it.span.End()
	}
}

func messages(items []item) []kafka.Message {
	out := make([]kafka.Message, len(items))
	for i, it := range items {
		out[i] = it.msg
	}
	return out
}

func sortByID(items []item) {
	// Insertion sort: the slices are short and nearly sorted.
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].rec.ID < items[j-1].rec.ID; j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}

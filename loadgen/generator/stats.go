package generator

import (
	"encoding/json"
	"math"
	"slices"
	"sync"
	"time"

	orderv1 "github.com/goodgo/goodgo/proto/goodgo/order/v1"
)

// Summary is what a run measured. Its JSON form (the -json flag) gives
// durations in milliseconds.
type Summary struct {
	// Mode is how orders were started: "rate 50/s" or "concurrency 8".
	Mode        string    `json:"mode"`
	Mix         string    `json:"mix"`
	Started     time.Time `json:"started"`
	Elapsed     Millis    `json:"elapsed_ms"`
	Interrupted bool      `json:"interrupted"` // the context ended the run early (Ctrl-C)

	Attempted   int `json:"attempted"`    // orders the generator started
	Placed      int `json:"placed"`       // PlaceOrder succeeded
	PlaceFailed int `json:"place_failed"` // PlaceOrder failed for good
	Terminal    int `json:"terminal"`     // reached CONFIRMED or CANCELLED
	TimedOut    int `json:"timed_out"`    // still PENDING at the follow deadline
	FollowErr   int `json:"follow_errors"`
	Abandoned   int `json:"abandoned"`  // cut short by the end of the context
	Unexpected  int `json:"unexpected"` // terminal, but not in the status the kind is owed

	// OrdersPerSec is Placed over the window orders were started in;
	// TerminalPerSec is Terminal over the whole run.
	OrdersPerSec   float64 `json:"orders_per_sec"`
	TerminalPerSec float64 `json:"terminal_per_sec"`

	// Saga is the saga completion time: the order's update_time in its
	// terminal state minus its create_time (both from the order service,
	// so no polling error). Observed is the client's view: PlaceOrder sent
	// to the terminal state seen by GetOrder polling. Place is PlaceOrder's
	// latency, with its retries.
	Saga     Latency `json:"saga"`
	Observed Latency `json:"observed"`
	Place    Latency `json:"place"`

	Kinds   []KindSummary `json:"kinds"`
	Retries RetrySummary  `json:"retries"`

	Throttled     int            `json:"throttled"`      // ResourceExhausted answers waited out (RetryInfo)
	ClientRetries int            `json:"client_retries"` // Aborted/Unavailable calls retried with the same key
	Errors        map[string]int `json:"errors"`         // failures by gRPC code, "place: Code" / "get: Code" / "saga: Code"
}

// KindSummary is the outcomes of the orders of one kind.
type KindSummary struct {
	Kind        Kind    `json:"kind"`
	Expected    string  `json:"expected"` // the terminal status owed
	Attempted   int     `json:"attempted"`
	Placed      int     `json:"placed"`
	PlaceFailed int     `json:"place_failed"`
	Confirmed   int     `json:"confirmed"`
	Cancelled   int     `json:"cancelled"`
	TimedOut    int     `json:"timed_out"`
	FollowErr   int     `json:"follow_errors"`
	Abandoned   int     `json:"abandoned"`
	Unexpected  int     `json:"unexpected"`
	Saga        Latency `json:"saga"`
	// CancelReasons counts the cancelled orders' reasons.
	CancelReasons map[string]int `json:"cancel_reasons,omitempty"`
	// SagaStates counts the orchestrator's final saga states (with
	// -orchestrator-addr only).
	SagaStates map[string]int `json:"saga_states,omitempty"`
}

// RetrySummary is the client retries: a second PlaceOrder with the same
// idempotency key and request, which must return the same order.
type RetrySummary struct {
	Sent      int `json:"sent"`
	SameOrder int `json:"same_order"`
	Different int `json:"different_order"`
	Failed    int `json:"failed"`
}

// Latency is a distribution's summary; percentiles by nearest rank.
type Latency struct {
	Count int    `json:"count"`
	Min   Millis `json:"min_ms"`
	Mean  Millis `json:"mean_ms"`
	P50   Millis `json:"p50_ms"`
	P95   Millis `json:"p95_ms"`
	P99   Millis `json:"p99_ms"`
	Max   Millis `json:"max_ms"`
}

// Millis is a duration that is JSON in milliseconds.
type Millis time.Duration

// MarshalJSON writes the duration in milliseconds, to the microsecond.
func (m Millis) MarshalJSON() ([]byte, error) {
	return json.Marshal(math.Round(float64(time.Duration(m).Microseconds())) / 1000)
}

// String is the duration rounded for a terminal.
func (m Millis) String() string {
	d := time.Duration(m)
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}

// percentile is the nearest-rank p-th percentile (0 < p ≤ 100) of sorted
// samples: the smallest sample that at least p% of them do not exceed.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// summarize sorts samples (in place) and summarizes them.
func summarize(samples []time.Duration) Latency {
	if len(samples) == 0 {
		return Latency{}
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, s := range samples {
		sum += s
	}
	return Latency{
		Count: len(samples),
		Min:   Millis(samples[0]),
		Mean:  Millis(sum / time.Duration(len(samples))),
		P50:   Millis(percentile(samples, 50)),
		P95:   Millis(percentile(samples, 95)),
		P99:   Millis(percentile(samples, 99)),
		Max:   Millis(samples[len(samples)-1]),
	}
}

// outcome is what became of one order.
type outcome struct {
	kind        Kind
	placed      bool
	placeErr    string // gRPC code, when placement failed
	status      orderv1.OrderStatus
	reason      string // the cancel reason
	timedOut    bool
	followErr   string
	abandoned   bool
	place       time.Duration
	saga        time.Duration // 0 when not terminal
	observed    time.Duration
	retry       retryResult
	sagaState   string
	sagaErr     string
	throttled   int
	clientRetry int
}

type retryResult int

const (
	retryNone retryResult = iota
	retrySame
	retryDifferent
	retryFailed
)

// Snapshot is the live view of a run, for progress displays.
type Snapshot struct {
	Elapsed  time.Duration
	Started  int     // orders started
	Placed   int     // PlaceOrder succeeded
	Done     int     // orders finished (any outcome)
	InFlight int     // started, not finished
	Errors   int     // placement failures, follow errors and time-outs
	Rate     float64 // placements per second over the last second or so
	// SagaP50, SagaP95 are over the last completed sagas (up to 1000).
	SagaP50, SagaP95 time.Duration
}

// recorder collects outcomes as orders finish. Safe for concurrent use.
type recorder struct {
	mu       sync.Mutex
	start    time.Time
	started  int
	placed   int
	done     int
	errors   int
	outcomes []outcome
	recent   []time.Duration // ring of the last saga times
	next     int
	// rate over a sliding window: placements at the last two ticks.
	prevAt     time.Time
	prevPlaced int
	rate       float64
}

const recentSagas = 1000

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, prevAt: start}
}

func (r *recorder) begin() {
	r.mu.Lock()
	r.started++
	r.mu.Unlock()
}

func (r *recorder) placedOne() {
	r.mu.Lock()
	r.placed++
	r.mu.Unlock()
}

func (r *recorder) finish(o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.done++
	if o.placeErr != "" || o.followErr != "" || o.timedOut {
		r.errors++
	}
	if o.saga > 0 {
		if len(r.recent) < recentSagas {
			r.recent = append(r.recent, o.saga)
		} else {
			r.recent[r.next] = o.saga
			r.next = (r.next + 1) % recentSagas
		}
	}
	r.outcomes = append(r.outcomes, o)
}

// snapshot is the live view at now; the rate is over the time since the
// previous snapshot once that is at least a second ago.
func (r *recorder) snapshot(now time.Time) Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := now.Sub(r.prevAt); d >= time.Second {
		r.rate = float64(r.placed-r.prevPlaced) / d.Seconds()
		r.prevAt, r.prevPlaced = now, r.placed
	} else if r.prevAt.Equal(r.start) && d > 0 {
		r.rate = float64(r.placed) / d.Seconds()
	}
	recent := slices.Clone(r.recent)
	slices.Sort(recent)
	return Snapshot{
		Elapsed:  now.Sub(r.start),
		Started:  r.started,
		Placed:   r.placed,
		Done:     r.done,
		InFlight: r.started - r.done,
		Errors:   r.errors,
		Rate:     r.rate,
		SagaP50:  percentile(recent, 50),
		SagaP95:  percentile(recent, 95),
	}
}

// summary adds up the outcomes into s (whose run fields the caller sets).
func summary(s Summary, outcomes []outcome, window, elapsed time.Duration) Summary {
	kinds := map[Kind]*KindSummary{}
	for _, k := range Kinds {
		kinds[k] = &KindSummary{Kind: k, Expected: k.Expected().String()}
	}
	var sagas, observed, places []time.Duration
	kindSagas := map[Kind][]time.Duration{}
	s.Errors = map[string]int{}
	for _, o := range outcomes {
		k := kinds[o.kind]
		s.Attempted++
		k.Attempted++
		s.Throttled += o.throttled
		s.ClientRetries += o.clientRetry
		switch {
		case o.abandoned && !o.placed:
			s.Abandoned++
			k.Abandoned++
			continue
		case !o.placed:
			s.PlaceFailed++
			k.PlaceFailed++
			s.Errors["place: "+o.placeErr]++
			continue
		}
		s.Placed++
		k.Placed++
		places = append(places, o.place)
		switch o.retry {
		case retrySame:
			s.Retries.Sent++
			s.Retries.SameOrder++
		case retryDifferent:
			s.Retries.Sent++
			s.Retries.Different++
		case retryFailed:
			s.Retries.Sent++
			s.Retries.Failed++
		case retryNone:
		}
		if o.sagaErr != "" {
			s.Errors["saga: "+o.sagaErr]++
		}
		if o.sagaState != "" {
			if k.SagaStates == nil {
				k.SagaStates = map[string]int{}
			}
			k.SagaStates[o.sagaState]++
		}
		switch {
		case o.status == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED || o.status == orderv1.OrderStatus_ORDER_STATUS_CANCELLED:
			s.Terminal++
			if o.status == orderv1.OrderStatus_ORDER_STATUS_CONFIRMED {
				k.Confirmed++
			} else {
				k.Cancelled++
				if k.CancelReasons == nil {
					k.CancelReasons = map[string]int{}
				}
				k.CancelReasons[o.reason]++
			}
			if o.status != o.kind.Expected() {
				s.Unexpected++
				k.Unexpected++
			}
			sagas = append(sagas, o.saga)
			kindSagas[o.kind] = append(kindSagas[o.kind], o.saga)
			observed = append(observed, o.observed)
		case o.abandoned:
			s.Abandoned++
			k.Abandoned++
		case o.timedOut:
			s.TimedOut++
			k.TimedOut++
		default:
			s.FollowErr++
			k.FollowErr++
			s.Errors["get: "+o.followErr]++
		}
	}
	if window > 0 {
		s.OrdersPerSec = float64(s.Placed) / window.Seconds()
	}
	if elapsed > 0 {
		s.TerminalPerSec = float64(s.Terminal) / elapsed.Seconds()
	}
	s.Elapsed = Millis(elapsed)
	s.Saga = summarize(sagas)
	s.Observed = summarize(observed)
	s.Place = summarize(places)
	for _, k := range Kinds {
		ks := kinds[k]
		ks.Saga = summarize(kindSagas[k])
		if ks.Attempted > 0 {
			s.Kinds = append(s.Kinds, *ks)
		}
	}
	return s
}

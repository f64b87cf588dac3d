package optlock

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/goodgo/goodgo/platform/telemetry"
)

// Contention picks, per key (one aggregate's id), between the optimistic
// path (read, then a version-checked UPDATE, retried on conflict) and a
// pessimistic one (a single atomic conditional UPDATE, or updates that the
// caller serializes itself), from how often recent updates of that key
// collided. It is the seed's advice — consider pessimistic locking above
// 10 % conflicts — made automatic: a key turns pessimistic when its recent
// collision rate exceeds Threshold and back when it falls below Cool.
//
// An update collides when it conflicted at least once, or when it started
// while another update of the same key was in flight in this process. The
// second half keeps measuring on the pessimistic path, where nothing
// conflicts any more: without it a hot key would look cold as soon as it
// switched, switch back, and storm again. The rate decays with HalfLife,
// so a key that cools (fewer writers, or none) returns to the optimistic
// path.
//
// Only the server's own updates may take the pessimistic path: an update
// that carries a version a client presented must stay version-checked, so
// that a stale version is still refused.
//
// The state is in-process and bounded (MaxKeys idle keys); every replica
// decides for itself. Correctness never depends on the choice: both paths
// are safe against concurrent writers, in this process or another one.
// A Contention is safe for concurrent use.
type Contention struct {
	aggregate string
	opts      ContentionOptions
	now       func() time.Time

	pessimisticKeys prometheus.Gauge
	toPessimistic   prometheus.Counter
	toOptimistic    prometheus.Counter

	mu   sync.Mutex
	keys map[string]*keyContention
}

// ContentionOptions tune a [Contention]; zero fields take the defaults.
type ContentionOptions struct {
	// Threshold is the collision rate (collided updates / updates, 0..1)
	// above which a key turns pessimistic. Default 0.1 (the seed's 10 %).
	Threshold float64
	// Cool is the rate below which a pessimistic key returns to the
	// optimistic path. Default Threshold/2: the gap keeps a key near the
	// threshold from flapping.
	Cool float64
	// HalfLife is how fast past updates lose weight. Default 1 s.
	HalfLife time.Duration
	// MinUpdates is the (decayed) number of updates a key needs before it
	// may turn pessimistic, so that one early conflict does not switch it.
	// Default 20.
	MinUpdates float64
	// MaxKeys bounds the keys remembered while idle; past it the quietest
	// optimistic keys are forgotten first. Default 1024.
	MaxKeys int
}

func (o ContentionOptions) withDefaults() ContentionOptions {
	if o.Threshold <= 0 {
		o.Threshold = 0.1
	}
	if o.Cool <= 0 || o.Cool > o.Threshold {
		o.Cool = o.Threshold / 2
	}
	if o.HalfLife <= 0 {
		o.HalfLife = time.Second
	}
	if o.MinUpdates <= 0 {
		o.MinUpdates = 20
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1024
	}
	return o
}

// keyContention is one key's decayed counts.
type keyContention struct {
	updates, collisions float64   // decayed sums
	at                  time.Time // when the sums were last decayed
	inFlight            int
	pessimistic         bool
}

// NewContention returns the policy of one aggregate type (a label, such
// as "product"), exporting on reg:
//
//	optlock_pessimistic_keys{aggregate}        keys on the pessimistic path now
//	optlock_mode_switches_total{aggregate,to}  switches to "pessimistic" or "optimistic"
//
// Several Contentions may share reg (one per aggregate type).
func NewContention(aggregate string, opts ContentionOptions, reg prometheus.Registerer) (*Contention, error) {
	keys, err := telemetry.Register(reg, "optlock", prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "optlock_pessimistic_keys",
		Help: "Aggregates whose recent updates collided often enough that they take the pessimistic path (one atomic conditional update, no retries).",
	}, []string{"aggregate"}))
	if err != nil {
		return nil, err
	}
	switches, err := telemetry.Register(reg, "optlock", prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "optlock_mode_switches_total",
		Help: "Switches of an aggregate between the optimistic and the pessimistic update path, by the path switched to.",
	}, []string{"aggregate", "to"}))
	if err != nil {
		return nil, err
	}
	return &Contention{
		aggregate:       aggregate,
		opts:            opts.withDefaults(),
		now:             time.Now,
		pessimisticKeys: keys.WithLabelValues(aggregate),
		toPessimistic:   switches.WithLabelValues(aggregate, "pessimistic"),
		toOptimistic:    switches.WithLabelValues(aggregate, "optimistic"),
		keys:            make(map[string]*keyContention),
	}, nil
}

// Ticket is one update of a key, from [Contention.Start] to [Ticket.Done].
type Ticket struct {
	c          *Contention
	key        string
	overlapped bool
	// Pessimistic says which path the update takes.
	Pessimistic bool
}

// Start registers an update of key that is about to run and says which
// path it takes. Report each attempt with Observe and call Done when the
// update has finished, whatever its outcome.
func (c *Contention) Start(key string) Ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[key]
	if !ok {
		if len(c.keys) >= c.opts.MaxKeys {
			c.evict()
		}
		k = &keyContention{at: c.now()}
		c.keys[key] = k
	}
	t := Ticket{c: c, key: key, overlapped: k.inFlight > 0, Pessimistic: k.pessimistic}
	k.inFlight++
	return t
}

// Observe records one attempt of the update (a version-checked UPDATE, or
// the one pessimistic write): conflicted says it lost a version check. An
// update that overlapped another of its key in this process counts as
// collided either way. Attempts, not updates, are counted so that a retry
// storm turns the key pessimistic while it rages, and so that the rate is
// the seed's (conflicts per attempt).
func (t Ticket) Observe(conflicted bool) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	k := c.keys[t.key] // present: a key in flight is never evicted
	now := c.now()
	decay := math.Exp2(-float64(now.Sub(k.at)) / float64(c.opts.HalfLife))
	k.updates = k.updates*decay + 1
	k.collisions *= decay
	if conflicted || t.overlapped {
		k.collisions++
	}
	k.at = now
	rate := k.collisions / k.updates
	switch {
	case !k.pessimistic && rate > c.opts.Threshold && k.updates >= c.opts.MinUpdates:
		k.pessimistic = true
		c.pessimisticKeys.Inc()
		c.toPessimistic.Inc()
	case k.pessimistic && rate < c.opts.Cool:
		k.pessimistic = false
		c.pessimisticKeys.Dec()
		c.toOptimistic.Inc()
	}
}

// Done ends the update.
func (t Ticket) Done() {
	t.c.mu.Lock()
	t.c.keys[t.key].inFlight--
	t.c.mu.Unlock()
}

// Pessimistic reports whether key currently takes the pessimistic path.
func (c *Contention) Pessimistic(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.keys[key]
	return ok && k.pessimistic
}

// evict forgets about a quarter of the idle keys, optimistic ones first
// (in Go's random map order), so that a stream of new keys costs one
// sweep per MaxKeys/4 keys. A forgotten pessimistic key starts over on
// the optimistic path. Called with c.mu held.
func (c *Contention) evict() {
	target := max(1, len(c.keys)/4)
	for _, pessimistic := range []bool{false, true} {
		for key, k := range c.keys {
			if target == 0 {
				return
			}
			if k.inFlight > 0 || k.pessimistic != pessimistic {
				continue
			}
			if k.pessimistic {
				c.pessimisticKeys.Dec()
			}
			delete(c.keys, key)
			target--
		}
	}
}

// errTurnedPessimistic ends the optimistic retries of an update whose key
// turned pessimistic meanwhile.
var errTurnedPessimistic = errors.New("optlock: key turned pessimistic")

// Update runs one update of key by the server itself (never one that
// carries a client's version): on the optimistic path optimistic under
// [Retry] with policy (it must re-read and return an error wrapping
// [ErrConflict] when its version check fails; m records its attempts
// under the aggregate's name), on the pessimistic path pessimistic, once
// (a single atomic conditional update that cannot conflict). An update
// whose key turns pessimistic while it retries stops retrying and takes
// the pessimistic path: that is what ends a retry storm.
func (c *Contention) Update(ctx context.Context, key string, policy Policy, m *Metrics,
	optimistic, pessimistic func(context.Context) error,
) error {
	t := c.Start(key)
	defer t.Done()
	if !t.Pessimistic {
		err := Retry(ctx, policy, m, c.aggregate, func(ctx context.Context) error {
			err := optimistic(ctx)
			conflicted := errors.Is(err, ErrConflict)
			if conflicted || err == nil {
				t.Observe(conflicted)
			}
			if conflicted && c.Pessimistic(key) {
				return errTurnedPessimistic
			}
			return err
		})
		if !errors.Is(err, errTurnedPessimistic) {
			return err
		}
	}
	err := pessimistic(ctx)
	if err == nil {
		t.Observe(false)
	}
	return err
}

package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/goodgo/goodgo/platform/backoff"
	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
)

// Reasons of outbox_lane_handovers_total.
const (
	handoverBalance    = "balance"     // another replica joined: fair share
	handoverBroker     = "broker"      // this replica cannot publish
	handoverUnknownKey = "unknown_key" // this replica lacks the key of the lane's next event
)

// avoidFor is how long a replica leaves alone a lane it handed over for want
// of a key: the replica that took it keeps it that long, then balancing may
// move it again (and, if an event under the missing key is still there, it
// is handed over again).
const avoidFor = time.Minute

// leases manages this replica's lane leases in one database. The workers
// read the active lanes; the lease loop renews, claims and releases them,
// and exchanges heartbeats with the other replicas.
//
// Releasing is two-phase so that no batch is in flight on a lane when it is
// handed over: the lane first leaves the active set (no new batch includes
// it), and its lease is released only once every batch its worker had
// started before that has finished (been marked or abandoned).
type leases struct {
	d    *database
	kick chan struct{} // run a tick now

	mu        sync.Mutex
	owned     map[int16]bool      // leased to us in the database
	releasing map[int16]releasing // owned lanes being handed over
	held      map[int16]*hold     // owned lanes stopped at an event whose key we lack
	avoid     map[int16]avoidance // lanes handed over for want of a key: not claimed back
	peers     map[string]peer     // other replicas' last heartbeats
	heldKeys  map[string]bool     // key ids reported in outbox_lanes_held
	freed     []int16             // released since the last heartbeat
	lastRenew time.Time           // when the last successful renewal was sent
	seeded    bool
	// out: this replica cannot publish and handed every lane over; it
	// probes the broker from outUntil on. giveUps counts consecutive
	// hand-overs (the pause doubles), backAt is the last return.
	out      bool
	outUntil time.Time
	giveUps  int
	backAt   time.Time
}

// releasing is a lane being handed over: its lease is released once its
// worker has finished cycle need.
type releasing struct {
	need   uint64
	reason string
}

// hold is an owned lane whose next event is sealed under a key this replica
// does not hold: the lane is not published past it, and it is retried with
// backoff (an operator may delete or reseal the row).
type hold struct {
	key      string
	outboxID int64
	eventID  string
	since    time.Time
	retryAt  time.Time
	wait     *backoff.Exponential
}

// avoidance is a lane handed over for want of key until until.
type avoidance struct {
	key   string
	until time.Time
}

func newLeases(d *database) *leases {
	return &leases{
		d: d, kick: make(chan struct{}, 1),
		owned: map[int16]bool{}, releasing: map[int16]releasing{}, held: map[int16]*hold{},
		avoid: map[int16]avoidance{}, peers: map[string]peer{}, heldKeys: map[string]bool{},
	}
}

// wake asks the lease loop for a tick now; signals coalesce.
func (l *leases) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// active returns, in order, the lanes worker i may publish now: owned, not
// being handed over, not held or due for a retry.
func (l *leases) active(i int) []int16 {
	n := int16(len(l.d.workers))
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int16
	for lane := range l.owned {
		if lane%n != int16(i) {
			continue
		}
		if _, r := l.releasing[lane]; r {
			continue
		}
		if h := l.held[lane]; h != nil && now.Before(h.retryAt) {
			continue
		}
		out = append(out, lane)
	}
	slices.Sort(out)
	return out
}

// stillActive reports whether every lane is still owned and not being
// handed over: a worker retrying a batch gives up when not.
func (l *leases) stillActive(lanes []int16) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lane := range lanes {
		if _, r := l.releasing[lane]; r || !l.owned[lane] {
			return false
		}
	}
	return true
}

// cycleDone is called by a worker after each batch cycle: a lane waiting
// for that cycle is released at once rather than at the next tick.
func (l *leases) cycleDone() {
	l.mu.Lock()
	waiting := len(l.releasing) > 0
	l.mu.Unlock()
	if waiting {
		l.wake()
	}
}

// isOut reports whether this replica handed its lanes over because it
// cannot publish.
func (l *leases) isOut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out
}

// holdLane stops rec's lane at rec, whose key id this replica does not hold,
// until a retry with backoff; the first time it is logged as an error.
func (l *leases) holdLane(rec outbox.Record, cause error) {
	now := time.Now()
	l.mu.Lock()
	if !l.owned[rec.Lane] {
		l.mu.Unlock() // handed over meanwhile: no longer ours to hold
		return
	}
	h := l.held[rec.Lane]
	first := h == nil || h.outboxID != rec.ID
	if h == nil {
		h = &hold{since: now, wait: l.d.r.newBackoff()}
		l.held[rec.Lane] = h
	}
	h.key, h.outboxID, h.eventID = rec.KeyID, rec.ID, rec.EventID.String()
	h.retryAt = now.Add(h.wait.Next())
	l.reportHeldLocked()
	l.mu.Unlock()
	if first {
		l.d.log.Error("outbox event sealed under a key this replica does not hold: its lane waits "+
			"(not parked) until a replica holding the key takes it over; add the key to OUTBOX_KEYS",
			"key_id", rec.KeyID, "lane", rec.Lane, "event_id", rec.EventID.String(), "outbox_id", rec.ID,
			"topic", rec.Topic, "event_type", rec.EventType, "aggregate_id", rec.AggregateID,
			"aggregate_version", rec.AggregateVersion, "error", cause.Error())
	}
}

// unhold resumes lane, whose next event is no longer one this replica
// cannot open (deleted, resealed, or published by another replica).
func (l *leases) unhold(lane int16) {
	l.mu.Lock()
	h := l.held[lane]
	if h == nil {
		l.mu.Unlock()
		return
	}
	delete(l.held, lane)
	l.reportHeldLocked()
	l.mu.Unlock()
	l.d.log.Info("lane no longer held", "lane", lane, "key_id", h.key, "held_for", time.Since(h.since).Round(time.Millisecond).String())
}

// reportHeldLocked sets outbox_lanes_held{database,key_id}; l.mu held.
func (l *leases) reportHeldLocked() {
	count := map[string]int{}
	for _, h := range l.held {
		count[h.key]++
	}
	g := l.d.r.metrics.lanesHeld
	for key := range l.heldKeys {
		if count[key] == 0 {
			g.WithLabelValues(l.d.name, key).Set(0)
		}
	}
	for key, n := range count {
		l.heldKeys[key] = true
		g.WithLabelValues(l.d.name, key).Set(float64(n))
	}
}

// heard records another replica's heartbeat, and asks for a tick at once
// when it says something new.
func (l *leases) heard(payload string) {
	b, ok := decodeBeat(payload)
	if !ok || b.ID == l.d.r.cfg.ID {
		return
	}
	now := time.Now()
	l.mu.Lock()
	prev := l.peers[b.ID]
	switch {
	case b.State == stateBye:
		delete(l.peers, b.ID)
	case b.State == stateOK && prev.State == stateOK:
		l.peers[b.ID] = peer{beat: b, at: now, okSince: prev.okSince}
	default:
		l.peers[b.ID] = peer{beat: b, at: now, okSince: now}
	}
	l.mu.Unlock()
	if b.State == stateBye || prev.changed(b) {
		l.wake()
	}
}

// freshPeersLocked forgets the peers not heard for 5/6 LeaseTTL and returns
// the others. A live replica beats every LeaseTTL/3; a dead one's last beat
// followed its last renewal, so it is forgotten by the time its leases
// expire. l.mu held.
func (l *leases) freshPeersLocked(now time.Time) map[string]peer {
	window := l.d.r.cfg.LeaseTTL * 5 / 6
	for id, p := range l.peers {
		if now.Sub(p.at) > window {
			delete(l.peers, id)
		}
	}
	return l.peers
}

// run maintains the leases every LeaseTTL/3 (or sooner: when another
// replica's lease is about to expire, a peer announced a change, or a lane
// being handed over became free) until ctx is cancelled; then it waits for
// the workers to stop and releases every lane.
func (l *leases) run(ctx context.Context, workersDone <-chan struct{}) {
	period := l.d.r.cfg.LeaseTTL / 3
	for {
		// A little jitter keeps replicas started together from ticking in
		// lockstep.
		wait := period - time.Duration(rand.Int64N(int64(period/10)+1)) //nolint:gosec // jitter, not a secret
		soon, err := l.tick(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			l.d.health.fail(err)
			l.expireIfStale()
		case err == nil && soon > 0:
			wait = min(wait, soon)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			<-workersDone
			l.releaseAll()
			return
		case <-l.kick:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// expireIfStale forgets every lane once the leases may have expired without
// renewal: another replica may own them by now. (MarkPublished checks the
// lease anyway; this only stops useless work.)
func (l *leases) expireIfStale() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.owned) > 0 && time.Since(l.lastRenew) > l.d.r.cfg.LeaseTTL {
		l.d.log.Warn("lane leases expired without renewal; dropping them", "lanes", len(l.owned))
		clear(l.owned)
		clear(l.releasing)
		clear(l.held)
		l.reportHeldLocked()
		l.d.r.metrics.lanesOwned.WithLabelValues(l.d.name).Set(0)
	}
}

// tick renews this replica's leases, decides how many lanes it should hold
// and which to give or take, and sends its heartbeat. soon, when positive,
// is when another replica's lease expires.
func (l *leases) tick(ctx context.Context) (soon time.Duration, err error) {
	r := l.d.r
	cfg := r.cfg
	q := l.d.q
	me := cfg.ID
	ttl := cfg.LeaseTTL.Milliseconds()
	// A tick slower than half the lease is given up (the next one follows a
	// period later); expireIfStale decides when too long has passed.
	ctx, cancel := context.WithTimeout(ctx, cfg.LeaseTTL/2)
	defer cancel()
	if !l.seeded {
		if err := q.SeedLanes(ctx, outbox.Lanes); err != nil {
			return 0, fmt.Errorf("seed lanes: %w", err)
		}
		l.seeded = true
	}
	sent := time.Now()
	renewed, err := q.RenewLanes(ctx, outboxdb.RenewLanesParams{TtlMs: ttl, Owner: me})
	if err != nil {
		return 0, fmt.Errorf("renew lanes: %w", err)
	}
	holders, err := q.LeaseHolders(ctx, me)
	if err != nil {
		return 0, fmt.Errorf("lease holders: %w", err)
	}
	l.d.health.ok()
	l.probeIfOut(ctx)

	now := time.Now()
	failing, lastFailure, lastErr := r.pub.failing(now)
	l.mu.Lock()
	l.lastRenew = sent
	held := make(map[int16]bool, len(renewed))
	for _, lane := range renewed {
		held[lane] = true
	}
	for lane := range l.owned {
		if !held[lane] {
			l.d.log.Warn("lane lease lost to another replica", "lane", lane)
			delete(l.releasing, lane)
			delete(l.held, lane)
		}
	}
	l.owned = held
	l.reportHeldLocked()
	peers := l.freshPeersLocked(now)

	// A replica that cannot publish steps aside, if another one says it
	// can — and said so before this one's last failed attempt, so that
	// when the broker comes back, a replica whose retry is still due does
	// not step aside for one that happened to retry first. Alone, or when
	// nobody can, it keeps its lanes and retries.
	if able := peersAbleBefore(peers, lastFailure); !l.out && failing >= cfg.HandOverAfter && len(able) > 0 {
		l.goOutLocked(now, failing, lastErr, able)
	}
	if !l.out && !l.backAt.IsZero() && r.pub.succeededSince(l.backAt) {
		l.giveUps, l.backAt = 0, time.Time{}
	}

	// Live replicas: holders of an unexpired lease and replicas heard
	// lately. Those that said they cannot publish take no share.
	capable := 0
	if !l.out {
		capable = 1
	}
	live := map[string]bool{}
	for _, h := range holders {
		live[h.Owner] = true
	}
	for id := range peers {
		live[id] = true
	}
	for id := range live {
		if p, ok := peers[id]; !ok || p.State != stateOut {
			capable++
		}
	}
	target := 0
	if !l.out {
		target = (outbox.Lanes + capable - 1) / capable
	}

	// Lanes other replicas handed over for want of a key: this replica
	// takes those whose key it holds, and never hands them back.
	needed := map[int16]bool{}
	var adopt []int16
	canAdopt := !l.out && failing == 0
	for _, p := range peers {
		for lane, key := range p.Need {
			needed[lane] = true
			if canAdopt && !l.owned[lane] && r.opts.Keys != nil && r.opts.Keys.Has(key) {
				adopt = append(adopt, lane)
			}
		}
	}
	slices.Sort(adopt)
	adopt = slices.Compact(adopt)

	// Held lanes go to a replica that says it holds their key.
	for lane, h := range l.held {
		if _, rel := l.releasing[lane]; rel {
			continue
		}
		for _, p := range peers {
			if p.State == stateOK && p.holds(h.key) {
				l.releasing[lane] = releasing{need: l.worker(lane).started.Load(), reason: handoverUnknownKey}
				l.avoid[lane] = avoidance{key: h.key, until: now.Add(avoidFor)}
				l.d.log.Warn("handing a held lane over to a replica that holds its key",
					"lane", lane, "key_id", h.key, "to", p.ID, "event_id", h.eventID)
				break
			}
		}
	}
	for lane, a := range l.avoid {
		if now.After(a.until) {
			delete(l.avoid, lane)
		}
	}

	// Hand surplus lanes over (a replica appeared, or this one cannot
	// publish): the highest first, never one another replica needs.
	active := make([]int16, 0, len(l.owned))
	for lane := range l.owned {
		if _, rel := l.releasing[lane]; !rel {
			active = append(active, lane)
		}
	}
	slices.Sort(active)
	reason := handoverBalance
	if l.out {
		reason = handoverBroker
	}
	for i := len(active) - 1; i >= 0 && len(active) > target; i-- {
		lane := active[i]
		if needed[lane] && !l.out {
			continue
		}
		active = slices.Delete(active, i, i+1)
		l.releasing[lane] = releasing{need: l.worker(lane).started.Load(), reason: reason}
	}
	// Release the lanes whose batches in flight have finished.
	var release []int16
	for lane, rel := range l.releasing {
		if l.worker(lane).finished.Load() >= rel.need {
			release = append(release, lane)
		}
	}
	slices.Sort(release)
	want := target - len(active)
	exclude := make([]int16, 0, len(l.avoid))
	for lane := range l.avoid {
		exclude = append(exclude, lane)
	}
	l.mu.Unlock()

	if len(release) > 0 {
		if err := q.ReleaseLanes(ctx, outboxdb.ReleaseLanesParams{Owner: me, Lanes: release}); err != nil {
			return 0, fmt.Errorf("release lanes: %w", err)
		}
		l.mu.Lock()
		for _, lane := range release {
			r.metrics.handovers.WithLabelValues(l.d.name, l.releasing[lane].reason).Inc()
			delete(l.owned, lane)
			delete(l.releasing, lane)
			delete(l.held, lane)
		}
		l.freed = append(l.freed, release...)
		l.reportHeldLocked()
		l.mu.Unlock()
		l.d.log.Info("lanes handed over", "lanes", release, "live_relays", len(live)+1)
	}
	var claimed []int16
	if len(adopt) > 0 {
		got, err := q.ClaimGivenLanes(ctx, outboxdb.ClaimGivenLanesParams{Owner: me, TtlMs: ttl, Lanes: adopt})
		if err != nil {
			return 0, fmt.Errorf("claim lanes: %w", err)
		}
		if len(got) > 0 {
			l.d.log.Info("lanes taken over for a replica that lacks their key", "lanes", got)
		}
		claimed = append(claimed, got...)
		want -= len(got)
	}
	if want > 0 {
		got, err := q.ClaimLanes(ctx, outboxdb.ClaimLanesParams{Owner: me, TtlMs: ttl, MaxLanes: int32(want), Exclude: exclude})
		if err != nil {
			return 0, fmt.Errorf("claim lanes: %w", err)
		}
		if len(got) > 0 {
			l.d.log.Info("lanes claimed", "lanes", got, "live_relays", len(live)+1)
		}
		claimed = append(claimed, got...)
	}
	l.mu.Lock()
	for _, lane := range claimed {
		l.owned[lane] = true
	}
	r.metrics.lanesOwned.WithLabelValues(l.d.name).Set(float64(len(l.owned)))
	b := l.beatLocked(failing > 0 || !l.backAt.IsZero() && !r.pub.succeededSince(l.backAt))
	l.mu.Unlock()
	if len(claimed) > 0 {
		l.d.wakeAll()
	}
	if err := l.send(ctx, b); err != nil {
		return 0, err
	}

	// Claim a dead replica's lanes the moment their lease expires rather
	// than up to a period later.
	for _, h := range holders {
		if d := time.Duration(h.ExpiresInSeconds*float64(time.Second)) + 20*time.Millisecond; soon == 0 || d < soon {
			soon = d
		}
	}
	return soon, nil
}

// worker returns the worker of lane.
func (l *leases) worker(lane int16) *worker {
	return l.d.workers[int(lane)%len(l.d.workers)]
}

// goOutLocked hands every lane over: this replica cannot publish and another
// says it can. It probes the broker again after a pause that doubles with
// each consecutive hand-over (up to 16 HandOverAfter). l.mu held.
func (l *leases) goOutLocked(now time.Time, failing time.Duration, cause error, able []string) {
	l.out = true
	l.giveUps++
	pause := l.d.r.cfg.HandOverAfter << min(l.giveUps-1, 4)
	l.outUntil = now.Add(pause)
	msg := ""
	if cause != nil {
		msg = cause.Error()
	}
	l.d.log.Warn("cannot publish: handing every lane over to the replicas that can",
		"failing_for", failing.Round(time.Millisecond).String(), "error", msg, "lanes", len(l.owned),
		"probe_after", pause.String(), "replicas_that_can", able)
}

// probeIfOut brings a replica that handed its lanes over back once its
// pause is over and the broker answers a probe.
func (l *leases) probeIfOut(ctx context.Context) {
	l.mu.Lock()
	due := l.out && !time.Now().Before(l.outUntil)
	l.mu.Unlock()
	if !due {
		return
	}
	var err error
	if probe := l.d.r.opts.Probe; probe != nil {
		pctx, cancel := context.WithTimeout(ctx, l.d.r.cfg.LeaseTTL/3)
		err = probe(pctx)
		cancel()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.outUntil = time.Now().Add(l.d.r.cfg.LeaseTTL / 3)
		return
	}
	l.out = false
	l.backAt = time.Now()
	l.d.r.pub.reset()
	l.d.log.Info("the broker answers again: taking lanes again")
}

// beatLocked is this replica's heartbeat now; l.mu held. A replica is
// "failing" while its publish attempts fail, and after it came back from
// handing its lanes over until it has published again: a probe that
// answers does not prove that publishing works, and a replica that only
// believes it can publish must not make the others step aside.
func (l *leases) beatLocked(failing bool) beat {
	b := beat{ID: l.d.r.cfg.ID, State: stateOK}
	switch {
	case l.out:
		b.State = stateOut
	case failing:
		b.State = stateFailing
	}
	if k := l.d.r.opts.Keys; k != nil {
		b.Keys = k.KeyIDs()
	}
	if len(l.avoid) > 0 {
		b.Need = make(map[int16]string, len(l.avoid))
		for lane, a := range l.avoid {
			b.Need[lane] = a.key
		}
	}
	b.Freed, l.freed = l.freed, nil
	return b
}

// send notifies the other replicas of b.
func (l *leases) send(ctx context.Context, b beat) error {
	if _, err := l.d.pool.Exec(ctx, "SELECT pg_notify($1, $2)", HeartbeatChannel, b.encode()); err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

// peersAbleBefore lists, sorted, the peers that have said they can publish
// since before t.
func peersAbleBefore(peers map[string]peer, t time.Time) []string {
	var out []string
	for id, p := range peers {
		if p.State == stateOK && p.okSince.Before(t) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// releaseAll gives every lane back at shutdown and says goodbye, so that
// the other replicas take them over at once instead of after the lease TTL.
func (l *leases) releaseAll() {
	l.mu.Lock()
	lanes := make([]int16, 0, len(l.owned))
	for lane := range l.owned {
		lanes = append(lanes, lane)
	}
	clear(l.owned)
	clear(l.releasing)
	clear(l.held)
	l.reportHeldLocked()
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if len(lanes) > 0 {
		err = l.d.q.ReleaseLanes(ctx, outboxdb.ReleaseLanesParams{Owner: l.d.r.cfg.ID, Lanes: lanes})
	}
	if err == nil {
		err = l.send(ctx, beat{ID: l.d.r.cfg.ID, State: stateBye, Freed: lanes})
	}
	switch {
	case err != nil && len(lanes) > 0:
		l.d.log.Warn("releasing lanes at shutdown; they expire after the lease TTL", "error", err.Error())
	case len(lanes) > 0:
		l.d.r.metrics.lanesOwned.WithLabelValues(l.d.name).Set(0)
		l.d.log.Info("lanes released", "lanes", len(lanes))
	}
}

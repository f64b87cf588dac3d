package relay

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/goodgo/goodgo/platform/outbox"
	"github.com/goodgo/goodgo/platform/outbox/outboxdb"
)

// liveRelaysSQL lists the replicas alive for this database: owners of an
// unexpired lease, and replicas connected under the application_name
// "outbox-relay/<id>" — a replica that owns no lane yet announces itself
// that way, so the others release lanes to it. Written by hand because sqlc
// does not know pg_stat_activity.
const liveRelaysSQL = `
SELECT owner FROM outbox_lanes WHERE lease_until > now() AND owner <> ''
UNION
SELECT substr(application_name, length($1) + 1)
FROM pg_stat_activity
WHERE datname = current_database() AND starts_with(application_name, $1)`

// leases manages this replica's lane leases in one database. The workers
// read the active lanes; the lease loop renews, claims and releases them.
//
// Releasing is two-phase so that no batch is in flight on a lane when it is
// handed over: the lane first leaves the active set (no new batch includes
// it), and its lease is released only once every batch its worker had
// started before that has finished (been marked or abandoned).
type leases struct {
	d *database

	mu        sync.Mutex
	owned     map[int16]bool   // leased to us in the database
	releasing map[int16]uint64 // owned lanes being handed over → worker cycle that must finish
	lastRenew time.Time
	seeded    bool
}

func newLeases(d *database) *leases {
	return &leases{d: d, owned: map[int16]bool{}, releasing: map[int16]uint64{}}
}

// active returns, in order, the lanes worker i may publish now.
func (l *leases) active(i int) []int16 {
	n := int16(len(l.d.workers))
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int16
	for lane := range l.owned {
		if _, r := l.releasing[lane]; !r && lane%n == int16(i) {
			out = append(out, lane)
		}
	}
	slices.Sort(out)
	return out
}

// stillActive reports whether every lane is still active (owned and not
// being released): a worker retrying a batch gives up when not.
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

// run maintains the leases every LeaseTTL/3 until ctx is cancelled; then it
// waits for the workers to stop and releases every lane.
func (l *leases) run(ctx context.Context, workersDone <-chan struct{}) {
	cfg := l.d.r.cfg
	period := cfg.LeaseTTL / 3
	for {
		if err := l.tick(ctx); err != nil && ctx.Err() == nil {
			l.d.health.fail(err)
			l.expireIfStale()
		}
		// A little jitter keeps replicas started together from ticking in
		// lockstep.
		wait := period - time.Duration(rand.Int64N(int64(period/10)+1)) //nolint:gosec // jitter, not a secret
		select {
		case <-ctx.Done():
			<-workersDone
			l.releaseAll()
			return
		case <-time.After(wait):
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
		l.d.r.metrics.lanesOwned.WithLabelValues(l.d.name).Set(0)
	}
}

func (l *leases) tick(ctx context.Context) error {
	cfg := l.d.r.cfg
	q := l.d.q
	me := cfg.ID
	ttl := cfg.LeaseTTL.Milliseconds()
	if !l.seeded {
		if err := q.SeedLanes(ctx, outbox.Lanes); err != nil {
			return fmt.Errorf("seed lanes: %w", err)
		}
		l.seeded = true
	}
	renewed, err := q.RenewLanes(ctx, outboxdb.RenewLanesParams{TtlMs: ttl, Owner: me})
	if err != nil {
		return fmt.Errorf("renew lanes: %w", err)
	}
	live, err := l.liveRelays(ctx)
	if err != nil {
		return err
	}
	l.d.health.ok()
	target := (outbox.Lanes + live - 1) / live

	l.mu.Lock()
	l.lastRenew = time.Now()
	held := make(map[int16]bool, len(renewed))
	for _, lane := range renewed {
		held[lane] = true
	}
	for lane := range l.owned {
		if !held[lane] {
			l.d.log.Warn("lane lease lost to another replica", "lane", lane)
			delete(l.releasing, lane)
		}
	}
	l.owned = held
	// Hand surplus lanes over (a replica appeared): the highest first.
	active := make([]int16, 0, len(l.owned))
	for lane := range l.owned {
		if _, r := l.releasing[lane]; !r {
			active = append(active, lane)
		}
	}
	slices.Sort(active)
	for len(active) > target {
		lane := active[len(active)-1]
		active = active[:len(active)-1]
		w := l.d.workers[int(lane)%len(l.d.workers)]
		l.releasing[lane] = w.started.Load()
	}
	// Release the lanes whose batches in flight have finished.
	var release []int16
	for lane, need := range l.releasing {
		if l.d.workers[int(lane)%len(l.d.workers)].finished.Load() >= need {
			release = append(release, lane)
		}
	}
	want := target - len(active)
	l.mu.Unlock()

	if len(release) > 0 {
		if err := q.ReleaseLanes(ctx, outboxdb.ReleaseLanesParams{Owner: me, Lanes: release}); err != nil {
			return fmt.Errorf("release lanes: %w", err)
		}
		l.mu.Lock()
		for _, lane := range release {
			delete(l.owned, lane)
			delete(l.releasing, lane)
		}
		l.mu.Unlock()
		l.d.log.Info("lanes handed over", "lanes", release, "live_relays", live)
	}
	if want > 0 {
		claimed, err := q.ClaimLanes(ctx, outboxdb.ClaimLanesParams{Owner: me, TtlMs: ttl, MaxLanes: int32(want)})
		if err != nil {
			return fmt.Errorf("claim lanes: %w", err)
		}
		if len(claimed) > 0 {
			l.mu.Lock()
			for _, lane := range claimed {
				l.owned[lane] = true
			}
			l.mu.Unlock()
			l.d.log.Info("lanes claimed", "lanes", claimed, "live_relays", live)
			l.d.wakeAll()
		}
	}
	l.mu.Lock()
	l.d.r.metrics.lanesOwned.WithLabelValues(l.d.name).Set(float64(len(l.owned)))
	l.mu.Unlock()
	return nil
}

// liveRelays counts the replicas alive for this database, this one
// included.
func (l *leases) liveRelays(ctx context.Context) (int, error) {
	rows, err := l.d.pool.Query(ctx, liveRelaysSQL, ApplicationNamePrefix)
	if err != nil {
		return 0, fmt.Errorf("live relays: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{l.d.r.cfg.ID: true}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return 0, fmt.Errorf("live relays: %w", err)
		}
		seen[id] = true
	}
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("live relays: %w", err)
	}
	return len(seen), nil
}

// releaseAll gives every lane back at shutdown so that the other replicas
// take them over at their next tick instead of after the lease TTL.
func (l *leases) releaseAll() {
	l.mu.Lock()
	lanes := make([]int16, 0, len(l.owned))
	for lane := range l.owned {
		lanes = append(lanes, lane)
	}
	clear(l.owned)
	clear(l.releasing)
	l.mu.Unlock()
	if len(lanes) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.d.q.ReleaseLanes(ctx, outboxdb.ReleaseLanesParams{Owner: l.d.r.cfg.ID, Lanes: lanes}); err != nil {
		l.d.log.Warn("releasing lanes at shutdown; they expire after the lease TTL", "error", err.Error())
		return
	}
	l.d.r.metrics.lanesOwned.WithLabelValues(l.d.name).Set(0)
	l.d.log.Info("lanes released", "lanes", len(lanes))
}

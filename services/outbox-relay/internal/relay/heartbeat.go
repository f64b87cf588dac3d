package relay

import (
	"encoding/json"
	"maps"
	"slices"
	"time"
)

// HeartbeatChannel is the NOTIFY channel on which replicas announce
// themselves in each database, every LeaseTTL/3 (and at once when something
// changed): a JSON beat. NOTIFY needs no privilege and no table.
const HeartbeatChannel = "outbox_relay"

// Heartbeat states.
const (
	stateOK      = "ok"      // publishing works, or was not tried yet
	stateFailing = "failing" // every publish attempt failing lately; lanes kept
	stateOut     = "out"     // cannot publish: every lane handed over
	stateBye     = "bye"     // shutting down: every lane released
)

// beat is one heartbeat.
type beat struct {
	ID    string `json:"id"`
	State string `json:"state"`
	// Keys are the key ids this replica can open.
	Keys []string `json:"keys,omitempty"`
	// Need names the lanes this replica handed over because it lacks the
	// key of their next event (lane → key id): a replica that holds the key
	// takes them whatever its share, and does not hand them back.
	Need map[int16]string `json:"need,omitempty"`
	// Freed are the lanes released since the last beat, so that the others
	// claim them now rather than at their next tick.
	Freed []int16 `json:"freed,omitempty"`
}

func (b beat) encode() string {
	p, err := json.Marshal(b)
	if err != nil {
		// A struct of strings and integers always marshals.
		panic(err)
	}
	return string(p)
}

func decodeBeat(payload string) (beat, bool) {
	var b beat
	if err := json.Unmarshal([]byte(payload), &b); err != nil || b.ID == "" {
		return beat{}, false
	}
	return b, true
}

// peer is the last beat heard from another replica.
type peer struct {
	beat
	at time.Time
	// okSince is when it started saying "ok" (beat after beat).
	okSince time.Time
}

// changed reports whether b says something p did not, which is worth
// acting on at once: a new replica, another state, other needed lanes,
// lanes freed.
func (p peer) changed(b beat) bool {
	return p.ID == "" || p.State != b.State || !maps.Equal(p.Need, b.Need) || len(b.Freed) > 0 ||
		!slices.Equal(p.Keys, b.Keys)
}

// holds reports whether the peer can open key id.
func (p peer) holds(keyID string) bool { return slices.Contains(p.Keys, keyID) }

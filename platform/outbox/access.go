package outbox

import (
	"slices"

	"github.com/goodgo/goodgo/platform/postgres"
)

// The outbox tables (db/outbox/schema/outbox.sql).
const (
	Table      = "outbox"
	LanesTable = "outbox_lanes"
)

// WriterAccess is all a writer's role (the service's own) needs on the
// outbox tables: it appends rows, and nothing more. Reading, changing or
// deleting rows is the relay's alone, and so are the lanes.
var WriterAccess = map[string][]string{
	Table: {postgres.Insert},
}

// RelayAccess is all the relay's role needs in a service's database: read,
// mark and delete outbox rows; seed, claim, renew and release lanes. Any
// other table is none of its business.
var RelayAccess = map[string][]string{
	Table:      {postgres.Select, postgres.Update, postgres.Delete},
	LanesTable: {postgres.Select, postgres.Insert, postgres.Update},
}

// WriterExcess names what a writer's role holds beyond WriterAccess on the
// outbox tables, and whether it bypasses grants altogether (a superuser, an
// owner of tables); nil when it holds no more than it needs. Its business
// tables are not judged here.
func WriterExcess(p postgres.Privileges) []string {
	out := p.Unrestricted()
	if p.Superuser {
		return out
	}
	for _, t := range []string{Table, LanesTable} {
		if slices.Contains(p.Owned, t) {
			continue // named by Unrestricted
		}
		for _, priv := range p.Tables[t] {
			if !slices.Contains(WriterAccess[t], priv) {
				out = append(out, priv+" on "+t)
			}
		}
	}
	return out
}

// RelayExcess names what the relay's role holds beyond RelayAccess in a
// service's database, on any table; nil when it holds no more than it
// needs.
func RelayExcess(p postgres.Privileges) []string {
	return p.Beyond(RelayAccess)
}

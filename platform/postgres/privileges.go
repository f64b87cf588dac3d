package postgres

import (
	"context"
	"fmt"
	"slices"
)

// Table privileges, in the order Privileges lists them.
const (
	Select     = "SELECT"
	Insert     = "INSERT"
	Update     = "UPDATE"
	Delete     = "DELETE"
	Truncate   = "TRUNCATE"
	References = "REFERENCES"
	Trigger    = "TRIGGER"
)

// tablePrivileges are the privileges Privileges asks about.
var tablePrivileges = []string{Select, Insert, Update, Delete, Truncate, References, Trigger}

// Privileges is what the role of a connection may do in its database: the
// answer to "which role am I, and what can I touch?", for start-up checks
// that refuse or warn about a role holding more than it needs.
type Privileges struct {
	// Role is the connection's role (current_user).
	Role string
	// Superuser bypasses every privilege check.
	Superuser bool
	// Tables maps every table of the connection's current schema (public)
	// to the privileges the role holds on it, directly, through PUBLIC or
	// through the roles it inherits (an owner and a superuser hold them
	// all), in the order SELECT, INSERT, UPDATE, DELETE, TRUNCATE,
	// REFERENCES, TRIGGER; nil for none.
	Tables map[string][]string
	// Owned are the tables the role owns, itself or through a role it is a
	// member of: it may grant itself anything on them.
	Owned []string
}

// privilegesSQL lists the tables of the current schema with what the
// current role may do with them. has_table_privilege answers for the
// current role with inheritance; pg_has_role(owner, 'USAGE') is true for
// the owner, members of the owning role and superusers.
const privilegesSQL = `
SELECT c.relname::text,
       pg_has_role(c.relowner, 'USAGE') AS owned,
       ARRAY(SELECT p FROM unnest($1::text[]) WITH ORDINALITY AS x(p, i)
             WHERE has_table_privilege(c.oid, p) ORDER BY i) AS privileges
FROM pg_class c
WHERE c.relnamespace = to_regnamespace(current_schema())
  AND c.relkind IN ('r', 'p')
ORDER BY c.relname`

// ReadPrivileges reads what the role of q may do in its database.
func ReadPrivileges(ctx context.Context, q Querier) (Privileges, error) {
	var p Privileges
	if err := q.QueryRow(ctx, "SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user").
		Scan(&p.Role, &p.Superuser); err != nil {
		return Privileges{}, fmt.Errorf("postgres: read the role: %w", err)
	}
	rows, err := q.Query(ctx, privilegesSQL, tablePrivileges)
	if err != nil {
		return Privileges{}, fmt.Errorf("postgres: read table privileges: %w", err)
	}
	defer rows.Close()
	p.Tables = map[string][]string{}
	for rows.Next() {
		var (
			table string
			owned bool
			privs []string
		)
		if err := rows.Scan(&table, &owned, &privs); err != nil {
			return Privileges{}, fmt.Errorf("postgres: read table privileges: %w", err)
		}
		if len(privs) == 0 {
			privs = nil
		}
		p.Tables[table] = privs
		if owned && !p.Superuser {
			p.Owned = append(p.Owned, table)
		}
	}
	if err := rows.Err(); err != nil {
		return Privileges{}, fmt.Errorf("postgres: read table privileges: %w", err)
	}
	return p, nil
}

// Unrestricted names what lets the role bypass grants altogether: being a
// superuser ("superuser") or owning tables ("owner of t"); nil when
// neither. A service's role should be neither: its grants are then all it
// can do.
func (p Privileges) Unrestricted() []string {
	if p.Superuser {
		return []string{"superuser"}
	}
	var out []string
	for _, t := range p.Owned {
		out = append(out, "owner of "+t)
	}
	return out
}

// Beyond names what the role holds beyond allowed (table → privileges) on
// the tables of its schema: "superuser" alone for a superuser, else
// "owner of t" for each table it owns and "DELETE on outbox", … for each
// privilege too many on the others; nil when nothing. A table missing from
// allowed allows nothing.
func (p Privileges) Beyond(allowed map[string][]string) []string {
	if p.Superuser {
		return []string{"superuser"}
	}
	out := p.Unrestricted()
	tables := make([]string, 0, len(p.Tables))
	for t := range p.Tables {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	for _, t := range tables {
		if slices.Contains(p.Owned, t) {
			continue
		}
		for _, priv := range p.Tables[t] {
			if !slices.Contains(allowed[t], priv) {
				out = append(out, priv+" on "+t)
			}
		}
	}
	return out
}

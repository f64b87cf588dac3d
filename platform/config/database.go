package config

import "net/url"

// Database is how a service reaches its own PostgreSQL database: as its own
// role to serve, and as the database's owner to create and migrate it.
type Database struct {
	// URL is the service's connection (DATABASE_URL), as its own login role
	// goodgo_<service>, which holds only the grants the migrations give it
	// (default postgres://goodgo_<service>@127.0.0.1:5432/goodgo_<service>).
	URL string
	// MigrateURL is the owner's connection (MIGRATE_DATABASE_URL), with
	// which the binary creates the database if it is missing and migrates
	// it at start, and which its migrate command uses. Empty means the
	// binary does not migrate: it waits for its schema to be migrated by
	// someone else (a migration job). The development default is DATABASE_URL
	// with the local superuser, postgres, as the user; production has no
	// default.
	MigrateURL string
}

// Superuser is the role MIGRATE_DATABASE_URL defaults to in development
// mode: the local server's superuser.
const Superuser = "postgres"

// RoleName is the login role of a service, goodgo_<service>, which the
// migrations create and grant to.
func RoleName(service string) string { return "goodgo_" + service }

// LoadDatabase reads DATABASE_URL and MIGRATE_DATABASE_URL for service (its
// database and role are both goodgo_<service>). dev is development mode.
func LoadDatabase(e *Env, service string, dev bool) Database {
	name := RoleName(service)
	d := Database{
		URL: e.URL("DATABASE_URL", "postgres://"+name+"@127.0.0.1:5432/"+name+"?sslmode=disable", "postgres", "postgresql"),
	}
	if _, set := e.raw("MIGRATE_DATABASE_URL"); set || !dev {
		if set {
			d.MigrateURL = e.URL("MIGRATE_DATABASE_URL", "", "postgres", "postgresql")
		}
		return d
	}
	d.MigrateURL = WithUser(d.URL, Superuser)
	return d
}

// WithUser returns the database URL raw with user as its user and no
// password; raw unchanged when it does not parse.
func WithUser(raw, user string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return raw
	}
	u.User = url.User(user)
	return u.String()
}

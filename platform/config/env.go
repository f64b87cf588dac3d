// Package config reads a binary's settings from environment variables,
// twelve-factor style. Every setting has a default that works on a developer
// machine; every bad value is collected as an error that names its variable,
// so a misconfigured binary stops at start with one line per problem instead
// of failing later with an error that names nothing.
//
// Only main reads the environment: it passes os.LookupEnv to NewEnv and the
// resulting values down to the packages that need them.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Env reads typed values from an environment lookup function and collects
// the problems it finds. An unset or blank variable takes the default. Env is
// not safe for concurrent use; it is meant to be used once, in main.
type Env struct {
	lookup func(string) (string, bool)
	errs   []error
	// keys maps the hash of every secret key read to its variable, so that
	// one key used for two purposes is refused (see Keys).
	keys map[[32]byte]string
}

// NewEnv returns an Env reading variables through lookup (os.LookupEnv in
// main, a map in tests).
func NewEnv(lookup func(string) (string, bool)) *Env {
	return &Env{lookup: lookup}
}

// Err returns every problem found so far joined into one error, one
// "NAME: problem" line each, or nil when there were none.
func (e *Env) Err() error {
	return errors.Join(e.errs...)
}

// Invalid records a problem with variable name that the typed getters cannot
// see, such as a rule spanning several variables. problem should read well
// after "NAME: ".
func (e *Env) Invalid(name, problem string) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s", name, problem))
}

// invalid records a problem with a value, quoting the value for the operator.
func (e *Env) invalid(name, value, problem string) {
	e.errs = append(e.errs, fmt.Errorf("%s: %s (got %q)", name, problem, value))
}

// raw returns the trimmed value of name and whether it is set and not blank.
func (e *Env) raw(name string) (string, bool) {
	v, ok := e.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// String returns the value of name, or def when it is unset or blank.
func (e *Env) String(name, def string) string {
	if v, ok := e.raw(name); ok {
		return v
	}
	return def
}

// Required returns the value of name and records "NAME: required" when it is
// unset or blank.
func (e *Env) Required(name string) string {
	v, ok := e.raw(name)
	if !ok {
		e.Invalid(name, "required")
	}
	return v
}

// OneOf returns the value of name, or def when unset; a value outside
// allowed (compared case-insensitively, returned lower-cased) is recorded as
// an error and def is returned.
func (e *Env) OneOf(name, def string, allowed ...string) string {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	lv := strings.ToLower(v)
	if !slices.Contains(allowed, lv) {
		e.invalid(name, v, "must be one of "+strings.Join(allowed, ", "))
		return def
	}
	return lv
}

// Int returns the integer value of name, or def when unset. A value that is
// not a base-10 integer is recorded as an error and def is returned.
func (e *Env) Int(name string, def int) int {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.invalid(name, v, "must be an integer")
		return def
	}
	return n
}

// Duration returns the value of name parsed by time.ParseDuration ("250ms",
// "30s", "1h"), or def when unset. A malformed or negative value is recorded
// as an error and def is returned.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.invalid(name, v, `must be a duration such as "500ms", "30s" or "2m"`)
		return def
	}
	if d < 0 {
		e.invalid(name, v, "must not be negative")
		return def
	}
	return d
}

// Bool returns the value of name parsed by strconv.ParseBool (1, t, true,
// 0, f, false, any case), or def when unset. Anything else is recorded as an
// error and def is returned.
func (e *Env) Bool(name string, def bool) bool {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.invalid(name, v, "must be true or false")
		return def
	}
	return b
}

// List returns the comma-separated value of name with each element trimmed
// and empty elements dropped, or def when unset or when nothing remains.
func (e *Env) List(name string, def []string) []string {
	v, ok := e.raw(name)
	if !ok {
		return def
	}
	var out []string
	for part := range strings.SplitSeq(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}

// URL returns the value of name, or def when unset, after checking that it
// parses as an absolute URL whose scheme is one of schemes (any scheme when
// none are given). A bad value is recorded as an error, with any password
// masked, and returned unchanged so later checks can still run. The default
// is checked too: a bad default is a programming error worth reporting.
func (e *Env) URL(name, def string, schemes ...string) string {
	v, ok := e.raw(name)
	if !ok {
		v = def
	}
	e.checkURL(name, v, schemes)
	return v
}

// URLList returns the comma-separated URLs of name, or def when it is unset
// or blank; each must be an absolute URL with one of schemes (any when none
// are given).
func (e *Env) URLList(name string, def []string, schemes ...string) []string {
	urls := e.List(name, def)
	for _, v := range urls {
		e.checkURL(name, v, schemes)
	}
	return urls
}

func (e *Env) checkURL(name, v string, schemes []string) {
	u, err := url.Parse(v)
	switch {
	case err != nil:
		e.invalid(name, redact(v), "must be a URL")
	case u.Scheme == "":
		e.invalid(name, redact(v), "must be an absolute URL with a scheme")
	case len(schemes) > 0 && !slices.Contains(schemes, strings.ToLower(u.Scheme)):
		e.invalid(name, u.Redacted(), "scheme must be one of "+strings.Join(schemes, ", "))
	}
}

// HostPort returns the value of name, or def when unset, after checking that
// it is a "host:port" address (host may be empty to listen on every
// interface; port 0 picks a free port). A bad value is recorded as an error
// and returned unchanged.
func (e *Env) HostPort(name, def string) string {
	v, ok := e.raw(name)
	if !ok {
		v = def
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil {
		e.invalid(name, v, `must be "host:port" or ":port"`)
		return v
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n > 65535 {
		e.invalid(name, v, "port must be a number from 0 to 65535")
	}
	return v
}

// redact masks what looks like a password in a value that failed to parse as
// a URL, so an error message never carries a secret into logs.
func redact(v string) string {
	scheme, rest, ok := strings.Cut(v, "://")
	if !ok {
		return v
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return v
	}
	user, _, hasPass := strings.Cut(rest[:at], ":")
	if !hasPass {
		return v
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}

// Command goodgoctl is GoodGo's operator and developer tool.
//
//	goodgoctl dev init  [-dir .dev] [-host NAME]...   development CA, service certificates, token issuer
//	goodgoctl dev token -sub USER [-roles operator,admin] [-ttl 1h] [-dir .dev]
//	goodgoctl dev ca    [-dir .dev]                    the development CA certificate, for clients
//	goodgoctl keys new  [-id ID]                       a fresh 256-bit key as ID:base64, for a *_KEYS variable
//	goodgoctl audit     [-token T] [-interval D] ...    check the cross-service invariants through the APIs
//	goodgoctl run       [-rate 2] [-bin bin] ...         the whole system on this machine until Ctrl-C (make run)
//
// The directory defaults to GOODGO_DEV_DIR, or .dev.
//
// `dev init` writes what the binaries read in development mode
// (GOODGO_MODE=development) from GOODGO_DEV_DIR: a CA, a certificate for
// each binary (SPIFFE ID spiffe://goodgo/<binary>, valid for its own name,
// localhost, 127.0.0.1, ::1 and every -host), and the key of the
// development token issuer with its public key set. Run again, it renews
// the certificates (running binaries reload them) and keeps the CA and the
// issuer. `dev token` mints a bearer token of that issuer, for grpcurl:
//
//	grpcurl -cacert .dev/pki/ca.crt -H "authorization: Bearer $(goodgoctl dev token -sub $USER_ID)" …
//
// None of this is for production: production binaries refuse to start
// without credentials named explicitly.
//
// `keys new` prints a random key for PII_KEYS, OUTBOX_KEYS,
// SAGA_CONTEXT_KEYS or VERSION_TOKEN_KEYS (docs/key-rotation.md); the id
// defaults to the date, "k20261202".
//
// `audit` reads every order saga, order, payment, reservation and the
// catalog through the services' gRPC APIs, as an operator, and checks the
// cross-service invariants (package audit): it prints each violation with
// the ids involved and exits 1 if there is any. With -interval it audits
// periodically and serves the outcome as Prometheus metrics on
// -metrics-addr instead (README.md beside this file).
//
// `run` (what `make run` calls) starts the development broker, the five
// binaries in development mode against the local PostgreSQL and Redis and
// the load generator, each from -bin, waits until each is ready (gRPC
// health and /readyz), places a first order and prints its outcome and its
// saga, then where to look; SIGINT or SIGTERM stop every process it
// started, the newest first.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/keyring"
	"github.com/goodgo/goodgo/platform/security"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errViolations) {
			os.Exit(1) // the violations are printed
		}
		fmt.Fprintln(os.Stderr, "goodgoctl: "+err.Error())
		os.Exit(2)
	}
}

const usage = `usage:
  goodgoctl dev init  [-dir .dev] [-host NAME]...
  goodgoctl dev token -sub USER [-roles operator,admin] [-ttl 1h] [-dir .dev]
  goodgoctl dev ca    [-dir .dev]
  goodgoctl keys new  [-id ID]
  goodgoctl run       [-rate 2] [-bin bin] [-dir .dev] [-logs .run] [-random-ports] [-db-prefix goodgo_]
  goodgoctl audit     [-token T | -token-file F] [-cacert F] [-order A] [-payment A] [-inventory A] [-orchestrator A]
                      [-grace 1m] [-interval D [-metrics-addr 127.0.0.1:9106]]`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) >= 1 && args[0] == "run" {
		return runAll(args[1:], stdout, stderr)
	}
	if len(args) >= 1 && args[0] == "audit" {
		return runAudit(args[1:], stdout, stderr)
	}
	if len(args) >= 2 && args[0] == "keys" && args[1] == "new" {
		return keysNew(args[2:], stdout, stderr)
	}
	if len(args) < 2 || args[0] != "dev" {
		return errors.New(usage)
	}
	switch args[1] {
	case "init":
		return devInit(args[2:], stdout, stderr)
	case "token":
		return devToken(args[2:], stdout, stderr)
	case "ca":
		return devCA(args[2:], stdout, stderr)
	default:
		return errors.New(usage)
	}
}

// defaultDir is GOODGO_DEV_DIR, as the binaries read it, or .dev.
func defaultDir() string {
	if d := os.Getenv("GOODGO_DEV_DIR"); d != "" {
		return d
	}
	return config.DefaultDevDir
}

// hosts collects repeated -host flags.
type hosts []string

func (h *hosts) String() string     { return strings.Join(*h, ",") }
func (h *hosts) Set(v string) error { *h = append(*h, v); return nil }

func devInit(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultDir(), "directory of the development credentials (GOODGO_DEV_DIR)")
	var extra hosts
	fs.Var(&extra, "host", "another DNS name or IP address the certificates are valid for (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p := config.DevPaths{Dir: *dir}
	if err := security.InitDev(p, security.Services, extra); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "development credentials in %s: CA %s, certificates for %s, token issuer %s\n",
		*dir, p.CA(), strings.Join(security.Services, ", "), p.JWKS())
	return nil
}

func devToken(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultDir(), "directory of the development credentials (GOODGO_DEV_DIR)")
	sub := fs.String("sub", "", "the user: the token's subject (a customer's id is a UUID)")
	roles := fs.String("roles", "", "comma-separated roles: operator, admin")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" {
		return errors.New("dev token: -sub is required")
	}
	var rs []string
	for r := range strings.SplitSeq(*roles, ",") {
		switch r = strings.TrimSpace(r); r {
		case "":
		case "operator", "admin":
			rs = append(rs, r)
		default:
			return fmt.Errorf("dev token: unknown role %q (operator, admin)", r)
		}
	}
	iss, err := security.DevIssuer(config.DevPaths{Dir: *dir})
	if err != nil {
		return fmt.Errorf("dev token: %w (run `goodgoctl dev init` first)", err)
	}
	tok, err := iss.Mint(*sub, rs, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func devCA(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev ca", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", defaultDir(), "directory of the development credentials (GOODGO_DEV_DIR)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pem, err := os.ReadFile(config.DevPaths{Dir: *dir}.CA())
	if err != nil {
		return fmt.Errorf("dev ca: %w (run `goodgoctl dev init` first)", err)
	}
	_, err = stdout.Write(pem)
	return err
}

// keysNew prints a fresh AES-256 (and HMAC-SHA256) key as id:base64, the
// form of every *_KEYS entry.
func keysNew(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keys new", flag.ContinueOnError)
	fs.SetOutput(stderr)
	id := fs.String("id", "k"+time.Now().UTC().Format("20060102"), "key id: letters, digits, '.', '_', '-'")
	if err := fs.Parse(args); err != nil {
		return err
	}
	key := make([]byte, keyring.KeySize)
	_, _ = rand.Read(key) // never fails (crypto/rand aborts the program instead)
	entry := *id + ":" + base64.StdEncoding.EncodeToString(key)
	if _, err := keyring.Parse(entry, *id); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, entry)
	return err
}

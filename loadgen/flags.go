package main

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/goodgo/goodgo/loadgen/generator"
	"github.com/goodgo/goodgo/platform/caller"
	"github.com/goodgo/goodgo/platform/config"
	"github.com/goodgo/goodgo/platform/grpcclient"
	"github.com/goodgo/goodgo/platform/token"
)

// options are the command line's flags.
type options struct {
	orderAddr, orchestratorAddr  string
	devDir, caFile               string
	tokenValue, tokenFile        string
	customerID                   string
	issuerKey, issuer, audience  string
	shoppers                     int
	rate                         float64
	concurrency, count           int
	duration                     time.Duration
	mix                          string
	retryFraction                float64
	followTimeout, poll, maxPoll time.Duration
	skus, hotSKU, oosSKU         string
	json, quiet                  bool
	restock                      int64
	inventoryAddr                string
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.orderAddr, "order-addr", "127.0.0.1:50051", "the order service's gRPC address")
	fs.StringVar(&o.orchestratorAddr, "orchestrator-addr", "", "the orchestrator's gRPC address; set, each order's saga state is read too")
	fs.StringVar(&o.devDir, "dev-dir", ".dev", "the development credentials (goodgoctl dev init): default CA and token issuer")
	fs.StringVar(&o.caFile, "ca", "", "the CA bundle that signed the services' certificates (default <dev-dir>/pki/ca.crt)")
	fs.StringVar(&o.tokenValue, "token", "", "a bearer token: every order is placed by its subject (instead of minting tokens)")
	fs.StringVar(&o.tokenFile, "token-file", "", "a file holding a bearer token (as -token; for production)")
	fs.StringVar(&o.customerID, "customer-id", "", "with -token/-token-file: the customer id (default the token's subject)")
	fs.StringVar(&o.issuerKey, "issuer-key", "", "the token issuer's private JWK, to mint a token per shopper (default <dev-dir>/jwt/issuer.jwk)")
	fs.StringVar(&o.issuer, "issuer", config.DevIssuer, "with -issuer-key: the tokens' issuer")
	fs.StringVar(&o.audience, "audience", config.DevAudience, "with -issuer-key: the tokens' audience")
	fs.IntVar(&o.shoppers, "shoppers", 50, "how many shoppers (random customer ids) to mint tokens for; rate limits are per shopper")
	fs.Float64Var(&o.rate, "rate", 0, "orders started per second (open loop); default 10 unless -concurrency is set")
	fs.IntVar(&o.concurrency, "concurrency", 0, "orders in flight (closed loop); with -rate, the cap on orders in flight")
	fs.IntVar(&o.count, "count", 0, "stop after this many orders")
	fs.DurationVar(&o.duration, "duration", 0, "stop starting orders after this long (default 10s unless -count is set)")
	fs.StringVar(&o.mix, "mix", generator.DefaultMix, "the kinds of order, kind=weight: good, decline (tok_decline), oos (out of stock), hot (one SKU)")
	fs.Float64Var(&o.retryFraction, "retry-fraction", 0.05, "the fraction of orders placed a second time with the same idempotency key (must return the same order)")
	fs.DurationVar(&o.followTimeout, "follow-timeout", time.Minute, "how long an order may take to reach CONFIRMED or CANCELLED")
	fs.DurationVar(&o.poll, "poll", 50*time.Millisecond, "the first pause between GetOrder polls; each next is half as long again")
	fs.DurationVar(&o.maxPoll, "max-poll", time.Second, "the longest pause between GetOrder polls")
	fs.StringVar(&o.skus, "skus", strings.Join(generator.DefaultGoodSKUs, ","), "the SKUs good and declined orders buy")
	fs.StringVar(&o.hotSKU, "hot-sku", generator.DefaultHotSKU, "the SKU every hot order buys")
	fs.StringVar(&o.oosSKU, "oos-sku", generator.DefaultOutOfStockSKU, "the SKU out-of-stock orders ask 1000 of")
	fs.Int64Var(&o.restock, "restock", 0, "before the run, set the available stock of the good and hot SKUs to this (needs the token issuer: an admin token is minted)")
	fs.StringVar(&o.inventoryAddr, "inventory-addr", "127.0.0.1:50053", "with -restock: the inventory service's gRPC address")
	fs.BoolVar(&o.json, "json", false, "print the summary as JSON (live progress then goes to stderr, if a terminal)")
	fs.BoolVar(&o.quiet, "quiet", false, "no live progress")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if o.rate == 0 && o.concurrency == 0 {
		o.rate = 10
	}
	if o.count == 0 && o.duration == 0 {
		o.duration = 10 * time.Second
	}
	if o.tokenValue != "" && o.tokenFile != "" {
		return o, errors.New("-token and -token-file: give one")
	}
	if o.shoppers < 1 {
		return o, errors.New("-shoppers: must be at least 1")
	}
	return o, nil
}

// setup turns the flags into the generator's Config, with the
// connections it dials and a func that closes them; with -restock, it
// restocks first.
func (o options) setup(ctx context.Context) (generator.Config, func(), error) {
	mix, err := generator.ParseMix(o.mix)
	if err != nil {
		return generator.Config{}, nil, err
	}
	shoppers, err := o.shopperList()
	if err != nil {
		return generator.Config{}, nil, err
	}
	paths := config.DevPaths{Dir: o.devDir}
	caFile := o.caFile
	if caFile == "" {
		caFile = paths.CA()
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return generator.Config{}, nil, fmt.Errorf("-ca: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return generator.Config{}, nil, fmt.Errorf("-ca: %s holds no PEM certificate", caFile)
	}
	var conns []*grpc.ClientConn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}
	orderConn, err := grpcclient.DialUser(o.orderAddr, roots)
	if err != nil {
		return generator.Config{}, nil, err
	}
	conns = append(conns, orderConn)
	cfg := generator.Config{
		Order:           orderConn,
		Shoppers:        shoppers,
		Rate:            o.rate,
		Concurrency:     o.concurrency,
		Count:           o.count,
		Duration:        o.duration,
		Mix:             mix,
		RetryFraction:   o.retryFraction,
		FollowTimeout:   o.followTimeout,
		PollInterval:    o.poll,
		MaxPollInterval: o.maxPoll,
		GoodSKUs:        splitList(o.skus),
		HotSKU:          o.hotSKU,
		OutOfStockSKU:   o.oosSKU,
	}
	if o.orchestratorAddr != "" {
		c, err := grpcclient.DialUser(o.orchestratorAddr, roots)
		if err != nil {
			closeAll()
			return generator.Config{}, nil, err
		}
		conns = append(conns, c)
		cfg.Orchestrator = c
	}
	if o.restock > 0 {
		if err := o.restockSKUs(ctx, roots, append(slices.Clone(cfg.GoodSKUs), cfg.HotSKU)); err != nil {
			closeAll()
			return generator.Config{}, nil, err
		}
	}
	return cfg, closeAll, nil
}

// restockSKUs sets the stock of skus to -restock as an admin minted by the
// issuer.
func (o options) restockSKUs(ctx context.Context, roots *x509.CertPool, skus []string) error {
	iss, err := o.loadIssuer()
	if err != nil {
		return fmt.Errorf("-restock: %w", err)
	}
	admin, err := iss.Mint("loadgen-admin", []string{caller.RoleAdmin}, 10*time.Minute)
	if err != nil {
		return fmt.Errorf("-restock: %w", err)
	}
	conn, err := grpcclient.DialUser(o.inventoryAddr, roots)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return generator.Restock(ctx, conn, admin, skus, o.restock)
}

// loadIssuer is the token issuer of -issuer-key, or the development one.
func (o options) loadIssuer() (*token.Issuer, error) {
	var iss *token.Issuer
	var err error
	if o.issuerKey != "" {
		iss, err = token.LoadIssuer(o.issuer, o.audience, o.issuerKey)
	} else {
		iss, err = token.LoadIssuer(config.DevIssuer, config.DevAudience, config.DevPaths{Dir: o.devDir}.IssuerKey())
	}
	if err != nil {
		return nil, fmt.Errorf("no token issuer (give -token, -token-file or -issuer-key, or run `goodgoctl dev init`): %w", err)
	}
	return iss, nil
}

// shopperList is the one user of -token/-token-file, or -shoppers random
// customers with tokens minted by the issuer (the development one by
// default), valid for the run and its follow-up with a margin.
func (o options) shopperList() ([]generator.Shopper, error) {
	tok := o.tokenValue
	if o.tokenFile != "" {
		raw, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("-token-file: %w", err)
		}
		tok = strings.TrimSpace(string(raw))
	}
	if tok != "" {
		id := o.customerID
		if id == "" {
			sub, err := subject(tok)
			if err != nil {
				return nil, fmt.Errorf("-token: %w (or give -customer-id)", err)
			}
			id = sub
		}
		return []generator.Shopper{{ID: id, Token: tok}}, nil
	}

	iss, err := o.loadIssuer()
	if err != nil {
		return nil, err
	}
	ttl := max(time.Hour, o.duration+o.followTimeout+10*time.Minute)
	shoppers := make([]generator.Shopper, o.shoppers)
	for i := range shoppers {
		id := uuid.NewString()
		t, err := iss.Mint(id, nil, ttl)
		if err != nil {
			return nil, fmt.Errorf("mint a token: %w", err)
		}
		shoppers[i] = generator.Shopper{ID: id, Token: t}
	}
	return shoppers, nil
}

// subject is a JWT's "sub" claim, read without verifying the token (the
// server does that): the customer id its orders must carry.
func subject(jwt string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("not a JWT: %w", err)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil || claims.Sub == "" {
		return "", errors.New("the token names no subject")
	}
	return claims.Sub, nil
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

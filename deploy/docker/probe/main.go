// Command probe is the health check of the GoodGo image: the runtime image
// is scratch, with no shell, curl or wget, so docker-compose.yml runs
//
//	/probe http://127.0.0.1:9100/readyz
//
// inside the container. It exits 0 when the URL answers 2xx within two
// seconds, 1 otherwise, printing why. A tcp://host:port URL only checks
// that the port accepts a connection: the development broker, which
// deploy/docker/compose.test.yml runs in Kafka's place, speaks no HTTP.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe <http-url | tcp://host:port>")
		os.Exit(2)
	}
	if err := check(os.Args[1], 2*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "probe: "+err.Error())
		os.Exit(1)
	}
}

// check GETs url and fails unless it answers 2xx within timeout.
func check(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if addr, ok := strings.CutPrefix(url, "tcp://"); ok {
		conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		return conn.Close()
	}
	// The URL is the health check's own argument, not outside input.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil) //nolint:gosec // G704: the health check's own URL
	if err != nil {
		return fmt.Errorf("request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req) //nolint:gosec // G704: the health check's own URL
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}

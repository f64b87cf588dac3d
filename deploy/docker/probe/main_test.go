package main

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/tcpproxy"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	var ready atomic.Bool
	ready.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready: kafka", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	require.NoError(t, check(srv.URL, time.Second))
	ready.Store(false)
	require.ErrorContains(t, check(srv.URL, time.Second), "503 Service Unavailable not ready: kafka")
	srv.Close()
	require.ErrorContains(t, check(srv.URL, time.Second), "get:")
}

func TestCheckTCP(t *testing.T) {
	t.Parallel()
	ln := tcpproxy.Serve(t, tcpproxy.Refuse)
	addr := ln.Addr().String()
	require.NoError(t, check("tcp://"+addr, time.Second))
	require.NoError(t, ln.Close())
	require.ErrorContains(t, check("tcp://"+addr, time.Second), "dial:")
}

package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	require.NoError(t, check("tcp://"+addr, time.Second))
	require.NoError(t, ln.Close())
	require.ErrorContains(t, check("tcp://"+addr, time.Second), "dial:")
}

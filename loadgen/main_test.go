package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/loadgen/generator"
)

func TestFlagDefaults(t *testing.T) {
	t.Parallel()
	o, err := parseFlags(nil, &bytes.Buffer{})
	require.NoError(t, err)
	require.InDelta(t, 10.0, o.rate, 0, "a rate when neither rate nor concurrency is set")
	require.Equal(t, 10*time.Second, o.duration, "a duration when neither count nor duration is set")
	require.Equal(t, generator.DefaultMix, o.mix)

	o, err = parseFlags([]string{"-concurrency", "8", "-count", "30"}, &bytes.Buffer{})
	require.NoError(t, err)
	require.Zero(t, o.rate)
	require.Zero(t, o.duration)

	_, err = parseFlags([]string{"-token", "a", "-token-file", "b"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "give one")
	_, err = parseFlags([]string{"extra"}, &bytes.Buffer{})
	require.ErrorContains(t, err, "unexpected arguments")
}

func TestSubjectOfAToken(t *testing.T) {
	t.Parallel()
	payload := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"6f1c2d4e-8a9b-4c3d-9e8f-7a6b5c4d3e2f","aud":"goodgo"}`))
	sub, err := subject("e30." + payload + ".sig")
	require.NoError(t, err)
	require.Equal(t, "6f1c2d4e-8a9b-4c3d-9e8f-7a6b5c4d3e2f", sub)
	_, err = subject("not-a-jwt")
	require.Error(t, err)
	_, err = subject("e30.e30.sig")
	require.ErrorContains(t, err, "no subject")
}

func TestABadSetupExitsWith2(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"-mix", "great=1"}, &bytes.Buffer{}, &stderr)
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), `unknown kind "great"`)

	stderr.Reset()
	code = run(context.Background(), []string{"-dev-dir", t.TempDir()}, &bytes.Buffer{}, &stderr)
	require.Equal(t, 2, code)
	require.Contains(t, stderr.String(), "no token issuer")
}

func sampleSummary() generator.Summary {
	return generator.Summary{
		Mode: "rate 20/s (at most 1000 in flight)", Mix: generator.DefaultMix, Elapsed: generator.Millis(11 * time.Second),
		Attempted: 200, Placed: 200, Terminal: 200, OrdersPerSec: 20, TerminalPerSec: 18.2,
		Saga: generator.Latency{Count: 200, P50: generator.Millis(180 * time.Millisecond), P99: generator.Millis(900 * time.Millisecond)},
		Kinds: []generator.KindSummary{{Kind: generator.KindGood, Expected: "ORDER_STATUS_CONFIRMED", Attempted: 140, Placed: 140, Confirmed: 140, SagaStates: map[string]int{"COMPLETED": 140}},
			{Kind: generator.KindOutOfStock, Expected: "ORDER_STATUS_CANCELLED", Attempted: 20, Placed: 20, Cancelled: 20, CancelReasons: map[string]int{"insufficient stock": 20}}},
		Retries: generator.RetrySummary{Sent: 10, SameOrder: 10},
		Errors:  map[string]int{"place: Unavailable": 1},
	}
}

func TestTableNamesEveryFigure(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, writeTable(&out, sampleSummary()))
	for _, want := range []string{"outcomes by kind", "saga completion", "180ms", "900ms", "20.0 placed", "10 sent: 10 same order",
		"CONFIRMED", "COMPLETED 140", "cancelled oos: insufficient stock 20", "errors: place: Unavailable 1"} {
		require.Contains(t, out.String(), want)
	}
}

func TestJSONInMilliseconds(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	require.NoError(t, writeJSON(&out, sampleSummary()))
	var got map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &got))
	require.InDelta(t, 180.0, got["saga"].(map[string]any)["p50_ms"], 0)
	require.InDelta(t, 200.0, got["placed"], 0)
}

func TestDescribeTheLiveLine(t *testing.T) {
	t.Parallel()
	line := describe(generator.Snapshot{Rate: 19.96, Placed: 120, InFlight: 7, Done: 113, Errors: 1, SagaP50: 180 * time.Millisecond, SagaP95: 420 * time.Millisecond})
	require.Equal(t, "20.0/s  in flight 7  placed 120  errors 1  saga p50 180ms p95 420ms", line)
}

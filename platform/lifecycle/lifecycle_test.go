package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type cfg struct{ name string }

func TestMainExitCodes(t *testing.T) {
	load := func(l Lookup) (cfg, error) {
		if v, ok := l("BAD"); ok {
			return cfg{}, errors.Join(errors.New("BAD: must not be set (got \""+v+"\")"), errors.New("OTHER: required"))
		}
		return cfg{name: "ok"}, nil
	}
	env := func(vars map[string]string) Lookup {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}

	t.Run("a bad configuration prints one line per problem and exits 2", func(t *testing.T) {
		var stderr bytes.Buffer
		ran := false
		code := runMain("svc", load, func(context.Context, cfg, io.Writer, Lookup) error { ran = true; return nil },
			env(map[string]string{"BAD": "x"}), io.Discard, &stderr)
		require.Equal(t, ExitConfig, code)
		require.False(t, ran)
		require.Equal(t, "config: BAD: must not be set (got \"x\")\nconfig: OTHER: required\n", stderr.String())
	})
	t.Run("a run error prints one line and exits 1", func(t *testing.T) {
		var stderr bytes.Buffer
		code := runMain("svc", load, func(_ context.Context, c cfg, _ io.Writer, _ Lookup) error {
			require.Equal(t, "ok", c.name)
			return errors.New("postgres unreachable")
		}, env(nil), io.Discard, &stderr)
		require.Equal(t, ExitRun, code)
		require.Equal(t, "svc: postgres unreachable\n", stderr.String())
	})
	t.Run("a clean run exits 0", func(t *testing.T) {
		code := runMain("svc", load, func(context.Context, cfg, io.Writer, Lookup) error { return nil }, env(nil), io.Discard, io.Discard)
		require.Equal(t, 0, code)
	})
}

func TestServe(t *testing.T) {
	t.Run("one server failing stops the others and reports the error", func(t *testing.T) {
		boom := errors.New("boom")
		stopped := make(chan struct{})
		err := Serve(context.Background(),
			func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil },
			func(context.Context) error { return boom },
		)
		require.ErrorIs(t, err, boom)
		select {
		case <-stopped:
		default:
			t.Fatal("the other server was not stopped")
		}
	})
	t.Run("cancelling ctx stops every server without error", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- Serve(ctx,
				func(ctx context.Context) error { <-ctx.Done(); return nil },
				func(ctx context.Context) error { <-ctx.Done(); return nil },
			)
		}()
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("Serve did not return after cancel")
		}
	})
}

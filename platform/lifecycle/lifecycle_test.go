package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime/debug"
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

func TestCommands(t *testing.T) {
	type migrateCfg struct{ url string }
	var ran []string
	load := func(Lookup) (cfg, error) { return cfg{name: "server"}, nil }
	run := func(context.Context, cfg, io.Writer, Lookup) error { ran = append(ran, "server"); return nil }
	migrate := NewCommand("migrate", "apply the migrations",
		func(l Lookup) (migrateCfg, error) {
			v, ok := l("MIGRATE_DATABASE_URL")
			if !ok {
				return migrateCfg{}, errors.New("MIGRATE_DATABASE_URL: required")
			}
			return migrateCfg{url: v}, nil
		},
		func(_ context.Context, c migrateCfg, _ io.Writer, _ Lookup) error {
			ran = append(ran, "migrate "+c.url)
			if c.url == "broken" {
				return errors.New("migration 4 failed")
			}
			return nil
		})
	env := func(vars map[string]string) Lookup {
		return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	}
	main := func(args []string, vars map[string]string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := dispatch("svc", args, load, run, []Command{migrate}, env(vars), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	t.Run("no argument serves", func(t *testing.T) {
		ran = nil
		code, _, _ := main(nil, nil)
		require.Equal(t, 0, code)
		require.Equal(t, []string{"server"}, ran)
	})
	t.Run("a command runs instead of the server, with its own configuration", func(t *testing.T) {
		ran = nil
		code, _, _ := main([]string{"migrate"}, map[string]string{"MIGRATE_DATABASE_URL": "u"})
		require.Equal(t, 0, code)
		require.Equal(t, []string{"migrate u"}, ran)
	})
	t.Run("a command's configuration and run errors have the server's exit codes", func(t *testing.T) {
		ran = nil
		code, _, stderr := main([]string{"migrate"}, nil)
		require.Equal(t, ExitConfig, code)
		require.Equal(t, "config: MIGRATE_DATABASE_URL: required\n", stderr)
		code, _, stderr = main([]string{"migrate"}, map[string]string{"MIGRATE_DATABASE_URL": "broken"})
		require.Equal(t, ExitRun, code)
		require.Equal(t, "svc migrate: migration 4 failed\n", stderr)
		require.Equal(t, []string{"migrate broken"}, ran)
	})
	t.Run("help lists the commands", func(t *testing.T) {
		code, stdout, _ := main([]string{"help"}, nil)
		require.Equal(t, 0, code)
		require.Contains(t, stdout, "usage: svc [command]")
		require.Contains(t, stdout, "migrate    apply the migrations")
	})
	t.Run("config lists the variables the server's configuration read, and serves nothing", func(t *testing.T) {
		ran = nil
		readsTwo := func(args []string, vars map[string]string) (int, string, string) {
			var stdout, stderr bytes.Buffer
			load := func(l Lookup) (cfg, error) {
				l("ZETA")
				if v, ok := l("ALPHA"); ok && v == "bad" {
					return cfg{}, errors.New("ALPHA: must not be bad")
				}
				return cfg{}, nil
			}
			code := dispatch("svc", args, load, run, nil, env(vars), &stdout, &stderr)
			return code, stdout.String(), stderr.String()
		}
		code, stdout, _ := readsTwo([]string{"config"}, map[string]string{"OTHER": "x"})
		require.Equal(t, 0, code)
		require.Equal(t, "ALPHA\nZETA\n", stdout)
		code, stdout, stderr := readsTwo([]string{"config"}, map[string]string{"ALPHA": "bad"})
		require.Equal(t, ExitConfig, code)
		require.Empty(t, stdout)
		require.Equal(t, "config: ALPHA: must not be bad\n", stderr)
		require.Empty(t, ran)
	})
	t.Run("anything else is refused with the usage, and nothing runs", func(t *testing.T) {
		for _, args := range [][]string{{"migrat"}, {"migrate", "now"}, {"-x"}} {
			ran = nil
			code, _, stderr := main(args, nil)
			require.Equal(t, ExitConfig, code, args)
			require.Contains(t, stderr, "svc: unexpected arguments")
			require.Contains(t, stderr, "usage: svc [command]")
			require.Empty(t, ran)
		}
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

// DefaultGC raises the collector's target when GOGC is not in the
// environment, and leaves a GOGC the runtime applied alone.
func TestDefaultGC(t *testing.T) {
	// SetGCPercent is process-wide: put back what the test binary had.
	before := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(before) })

	unset := func(string) (string, bool) { return "", false }
	require.True(t, DefaultGC(unset))
	require.Equal(t, DefaultGCPercent, debug.SetGCPercent(100), "GOGC unset: the default")

	set := func(k string) (string, bool) { return "50", k == "GOGC" }
	require.False(t, DefaultGC(set))
	require.Equal(t, 100, debug.SetGCPercent(100), "GOGC set: the runtime's value stays")
}

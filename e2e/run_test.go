package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/goodgo/goodgo/platform/pgtest"
)

// TestMakeRun runs `goodgoctl run` (what `make run` calls) as a user would:
// it starts the broker, the five binaries and the demo client, shows a
// first order CONFIRMED with its saga COMPLETED, and on SIGINT stops every
// process it started, leaving none of its process group behind.
func TestMakeRun(t *testing.T) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])

	// The five binaries (race builds, shared with the other tests) and the
	// three the runner adds, in one directory as `make build` leaves ./bin.
	bin := t.TempDir()
	services := buildWith(t, variant{race: true})
	for _, s := range Services {
		require.NoError(t, os.Symlink(filepath.Join(services, s), filepath.Join(bin, s)))
	}
	for _, c := range []string{"goodgoctl", "devbroker", "loadgen"} {
		out, err := exec.Command("go", "build", "-race", "-o", filepath.Join(bin, c), "github.com/goodgo/goodgo/"+c).CombinedOutput()
		require.NoError(t, err, "build %s: %s", c, out)
	}

	// Databases named as the environment's (databases drops them at
	// cleanup, after the runner has stopped); Redis keys under a prefix of
	// the test's own.
	prefix := pgtest.Prefix + "e2e_" + suffix + "_"
	databases(t, pgtest.ServerURL(), suffix, svcOrder, svcPayment, svcInventory, svcOrchestrator)
	server, err := url.Parse(pgtest.ServerURL())
	require.NoError(t, err)
	idem := "e2e:" + suffix + ":"
	t.Cleanup(func() { deleteKeys(t, idem) })

	dir := t.TempDir()
	cmd := exec.Command(filepath.Join(bin, "goodgoctl"), "run", "-bin", bin, "-dir", filepath.Join(dir, "dev"),
		"-logs", filepath.Join(dir, "logs"), "-random-ports", "-db-prefix", prefix, "-postgres", server.Host,
		"-redis", redisURL, "-idempotency-prefix", idem, "-rate", "5")
	// A group of its own, as a shell gives a foreground job: the test
	// then finds every process the runner started by the group id.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = cmd.Stdout
	require.NoError(t, cmd.Start())
	pgid := cmd.Process.Pid
	t.Cleanup(func() {
		// Only if the test failed before the runner stopped: nothing of
		// the group may outlive the test.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})

	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var output strings.Builder
	defer func() {
		if t.Failed() {
			t.Logf("goodgoctl run printed:\n%s", output.String())
			logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
			for _, l := range logs {
				data, _ := os.ReadFile(l)
				t.Logf("%s (last 3000 bytes):\n%s", filepath.Base(l), tail(string(data), 3000))
			}
		}
	}()
	confirmed := regexp.MustCompile(`^first order [0-9a-f-]{36}: ORDER_STATUS_CONFIRMED; its saga [0-9a-f-]{36}: SAGA_STATE_COMPLETED`)
	sawConfirmed := false
	waitFor := func(what string, match func(string) bool) {
		t.Helper()
		deadline := time.After(4 * time.Minute)
		for {
			select {
			case line, ok := <-lines:
				require.True(t, ok, "goodgoctl run ended before %s", what)
				output.WriteString(line + "\n")
				if confirmed.MatchString(line) {
					sawConfirmed = true
				}
				if match(line) {
					return
				}
			case <-deadline:
				require.FailNow(t, "goodgoctl run did not print "+what)
			}
		}
	}
	waitFor("that everything is running", func(l string) bool { return strings.HasPrefix(l, "everything is running") })
	require.True(t, sawConfirmed, "the first order was not shown CONFIRMED with its saga COMPLETED")
	members := groupMembers(t, pgid)
	require.GreaterOrEqual(t, len(members), 8, "the runner, the broker, five binaries and loadgen: %v", members)

	// The demo client places orders: sagas start beyond the first order's.
	require.True(t, poll(time.Minute, 100*time.Millisecond, func() bool {
		data, err := os.ReadFile(filepath.Join(dir, "logs", "orchestrator.log"))
		return err == nil && strings.Count(string(data), `"msg":"order saga started"`) >= 10
	}), "the demo client's orders start no sagas")
	loadgenLog := filepath.Join(dir, "logs", "loadgen.log")

	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	waitFor("that every process stopped", func(l string) bool { return l == "stopped: every process has exited" })
	for range lines {
	}
	require.NoError(t, cmd.Wait(), "goodgoctl run exits 0 on SIGINT")
	require.Empty(t, groupMembers(t, pgid), "processes of the runner's group left behind")
	// loadgen prints its summary when stopped: the orders it placed ended.
	data, err := os.ReadFile(loadgenLog)
	require.NoError(t, err)
	require.Contains(t, string(data), "CONFIRMED")
	t.Logf("goodgoctl run printed:\n%s", output.String())
}

// groupMembers lists the live processes (not zombies) of process group
// pgid, from /proc.
func groupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parens.
		s := string(stat)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 3 || fields[0] == "Z" {
			continue
		}
		if g, _ := strconv.Atoi(fields[2]); g == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// deleteKeys removes the keys under prefix from the shared Redis.
func deleteKeys(t *testing.T, prefix string) {
	opt, err := redis.ParseURL(redisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		require.NoError(t, rdb.Del(ctx, iter.Val()).Err())
	}
	require.NoError(t, iter.Err())
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

package docker_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// composeTestEnv opts in to TestComposeRunsForReal; `make compose-test`
// sets it. The test needs root, Debian's docker.io and debootstrap
// packages and bin/docker-compose, and takes minutes: `make test` skips it.
const composeTestEnv = "GOODGO_COMPOSE_TEST"

// debianPackages are installed into the Debian image by debootstrap:
// PostgreSQL and Redis for their services, kcat for kafka-init. Changing
// the list changes the cached tarball's name, so the cache rebuilds.
var debianPackages = []string{"postgresql-15", "redis-server", "kcat"}

const (
	debianSuite = "bookworm"
	debianImage = "goodgo-test/debian:bookworm"
)

// localImages maps each binary the override runs to its image.
var localImages = map[string]string{
	"order":        "goodgo-test/order:local",
	"payment":      "goodgo-test/payment:local",
	"inventory":    "goodgo-test/inventory:local",
	"orchestrator": "goodgo-test/orchestrator:local",
	"outbox-relay": "goodgo-test/outbox-relay:local",
	"goodgoctl":    "goodgo-test/goodgoctl:local",
	"loadgen":      "goodgo-test/loadgen:local",
	"devbroker":    "goodgo-test/devbroker:local",
}

// TestComposeRunsForReal runs docker-compose.yml with the override
// deploy/docker/compose.test.yml on a Docker engine it starts itself: it
// builds the images (no registry is reachable), brings the stack up with
// `docker compose up --wait`, places orders from a container on the
// project's network and checks they confirm, crashes the orchestrator and
// checks that the restart policy brings it back and that orders placed
// meanwhile confirm, audits the cross-service invariants, then takes the
// stack down and stops the engine.
func TestComposeRunsForReal(t *testing.T) {
	if os.Getenv(composeTestEnv) != "1" {
		t.Skip("runs a real Docker engine: `make compose-test` (sets " + composeTestEnv + "=1; needs root, docker.io, debootstrap)")
	}
	deadline, ok := t.Deadline()
	if !ok {
		deadline = time.Now().Add(30 * time.Minute)
	}
	// Room for the cleanups (compose down, the engine's stop) after a
	// step that ran out of time.
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-2*time.Minute))
	defer cancel()

	repo, err := filepath.Abs(root)
	require.NoError(t, err)
	compose := filepath.Join(repo, "bin", "docker-compose")
	require.FileExists(t, compose, "make compose-test builds it (tools/compose pins its version)")
	cache := filepath.Join(repo, "bin", "compose-test")
	require.NoError(t, os.MkdirAll(cache, 0o755))

	start := time.Now()
	step := func(name string) func() {
		t0 := time.Now()
		t.Logf("%s: %s …", time.Since(start).Round(time.Second), name)
		return func() {
			t.Logf("%s: %s done in %s", time.Since(start).Round(time.Second), name, time.Since(t0).Round(time.Second))
		}
	}

	done := step("Debian base tarball")
	debianTar := debianTarball(ctx, t, cache)
	done()

	done = step("static binaries")
	bins := buildBinaries(ctx, t)
	done()

	done = step("Docker engine")
	d := startEngine(ctx, t, compose)
	done()

	done = step("images")
	d.run(ctx, t, nil, "import", "--change", "ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		debianTar, debianImage)
	for bin, image := range localImages {
		d.importApp(ctx, t, filepath.Join(bins, bin), filepath.Join(bins, "probe"), image)
	}
	done()

	c := composeCmd{d: d, dir: repo}
	t.Cleanup(func() {
		if t.Failed() {
			c.logs(t)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer ccancel()
		if out, err := c.cmd(cctx, "down", "-v", "--remove-orphans", "--timeout", "10").CombinedOutput(); err != nil {
			t.Errorf("docker compose down: %v\n%s", err, out)
		}
	})
	done = step("docker compose up --wait")
	c.run(ctx, t, "up", "--detach", "--wait", "--wait-timeout", "600")
	done()

	done = step("orders from a container")
	s, err := c.placeOrders(ctx, 10, 5)
	require.NoError(t, err)
	requireAllConfirmed(t, s, 10)
	done()

	done = step("orchestrator crash, restart, catch-up")
	orch := strings.TrimSpace(c.output(ctx, t, "ps", "--quiet", "orchestrator"))
	require.NotEmpty(t, orch)
	restarts, err := d.restartCount(ctx, orch)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(d.output(ctx, t, "inspect", "--format", "{{.State.Pid}}", orch)))
	require.NoError(t, err)
	// Orders placed from the crash on reach the order service while the
	// orchestrator is down or not ready: their events wait in the outbox
	// and Kafka until it is back. loadgen places them for 20 s (60 at 3
	// a second) with the one SKU the demo client never buys, so the
	// order database tells when the first is placed: the crash comes then.
	const n, rate = 60, 3
	const sku = "SKU-LAPTOP"
	placedSoFar := func() (int, error) {
		out, err := c.cmd(ctx, "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "goodgo_order", "-tAc",
			"SELECT count(DISTINCT order_id) FROM order_items WHERE sku = '"+sku+"'").Output()
		if err != nil {
			return 0, fmt.Errorf("count the orders: %w", err)
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	}
	type result struct {
		s   loadSummary
		err error
	}
	placed := make(chan result, 1)
	go func() {
		s, err := c.placeOrders(ctx, n, rate, "-skus", sku)
		placed <- result{s, err}
	}()
	waitFor(ctx, t, 2*time.Minute, "loadgen's first order placed", func() (bool, error) {
		k, err := placedSoFar()
		return k > 0, err
	})
	// A crash, not `docker kill`: Docker counts `docker kill` (like
	// `docker stop`) as a manual stop, after which no restart policy
	// restarts the container. The main process killed from outside is
	// what restart: unless-stopped is there for.
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	killed := time.Now()
	atCrash, err := placedSoFar()
	require.NoError(t, err)
	waitFor(ctx, t, 5*time.Minute, "the orchestrator back healthy after its crash", func() (bool, error) {
		n, err := d.restartCount(ctx, orch)
		if err != nil || n <= restarts {
			return false, err
		}
		h, err := d.health(ctx, orch)
		return h == "healthy", err
	})
	back := time.Now()
	atBack, err := placedSoFar()
	require.NoError(t, err)
	after, err := d.restartCount(ctx, orch)
	require.NoError(t, err)
	t.Logf("orchestrator back healthy %s after the crash (restarts %d)", back.Sub(killed).Round(100*time.Millisecond), after)
	r := <-placed
	require.NoError(t, r.err)
	s = r.s
	t.Logf("%d of the %d orders placed while the orchestrator was down", atBack-atCrash, n)
	require.Greater(t, atBack, atCrash, "no order was placed while the orchestrator was down")
	requireAllConfirmed(t, s, n)
	done()

	done = step("goodgoctl audit")
	token := strings.TrimSpace(c.output(ctx, t, "run", "--rm", "--no-deps", "-T", "credentials",
		"dev", "token", "-sub", "0190a000-0000-7000-8000-00000000c0de", "-roles", "operator", "-dir", "/home/nonroot/dev"))
	require.NotEmpty(t, token)
	out := c.output(ctx, t, "run", "--rm", "--no-deps", "-T", "credentials", "audit", "-token", token,
		"-cacert", "/home/nonroot/dev/pki/ca.crt", "-order", "order:50051", "-payment", "payment:50052",
		"-inventory", "inventory:50053", "-orchestrator", "orchestrator:50054")
	t.Logf("audit: %s", strings.TrimSpace(out))
	require.Contains(t, out, " 0 violations")
	done()

	done = step("docker compose down -v")
	c.run(ctx, t, "down", "-v", "--remove-orphans", "--timeout", "10")
	require.Empty(t, strings.TrimSpace(d.output(ctx, t, "ps", "--all", "--quiet")), "containers left after down")
	require.Empty(t, strings.TrimSpace(d.output(ctx, t, "volume", "ls", "--quiet")), "volumes left after down -v")
	done()
}

// loadSummary is what the test reads of loadgen's JSON summary.
type loadSummary struct {
	Started    time.Time `json:"started"`
	Attempted  int       `json:"attempted"`
	Placed     int       `json:"placed"`
	Terminal   int       `json:"terminal"`
	TimedOut   int       `json:"timed_out"`
	Unexpected int       `json:"unexpected"`
	Kinds      []struct {
		Kind      string `json:"kind"`
		Confirmed int    `json:"confirmed"`
		Cancelled int    `json:"cancelled"`
	} `json:"kinds"`
}

func requireAllConfirmed(t *testing.T, s loadSummary, n int) {
	t.Helper()
	require.Equal(t, n, s.Placed, "placed: %+v", s)
	require.Equal(t, n, s.Terminal, "followed to CONFIRMED or CANCELLED: %+v", s)
	confirmed := 0
	for _, k := range s.Kinds {
		confirmed += k.Confirmed
	}
	require.Equal(t, n, confirmed, "CONFIRMED (GetOrder): %+v", s)
	require.Zero(t, s.Unexpected, "%+v", s)
}

// debianTarball returns the cached Debian root filesystem as a tarball,
// made first if missing: debootstrap (minbase and debianPackages) from the
// host's Debian mirror. The downloaded packages are kept in cache/debs, so
// a new package list downloads only what is new.
func debianTarball(ctx context.Context, t *testing.T, cache string) string {
	t.Helper()
	key := sha256.Sum256([]byte(debianSuite + " minbase " + strings.Join(debianPackages, ",")))
	tarball := filepath.Join(cache, "debian-"+debianSuite+"-"+hex.EncodeToString(key[:6])+".tar")
	if _, err := os.Stat(tarball); err == nil {
		return tarball
	}
	_, err := exec.LookPath("debootstrap")
	require.NoError(t, err, "apt-get install debootstrap")
	rootfs := filepath.Join(cache, "rootfs.tmp")
	require.NoError(t, os.RemoveAll(rootfs))
	debs := filepath.Join(cache, "debs")
	require.NoError(t, os.MkdirAll(debs, 0o755))
	args := []string{"--variant=minbase", "--include=" + strings.Join(debianPackages, ","), "--cache-dir=" + debs, debianSuite, rootfs}
	if m := hostMirror(); m != "" {
		args = append(args, m)
	}
	runCmd(ctx, t, exec.CommandContext(ctx, "debootstrap", args...))
	// Only the packages' files: no package cache or index in the image.
	for _, dir := range []string{"var/cache/apt/archives", "var/lib/apt/lists"} {
		entries, err := filepath.Glob(filepath.Join(rootfs, dir, "*"))
		require.NoError(t, err)
		for _, e := range entries {
			if fi, err := os.Lstat(e); err == nil && fi.Mode().IsRegular() {
				require.NoError(t, os.Remove(e))
			}
		}
	}
	tmp := tarball + ".tmp"
	runCmd(ctx, t, exec.CommandContext(ctx, "tar", "--numeric-owner", "-C", rootfs, "-cf", tmp, "."))
	require.NoError(t, os.Rename(tmp, tarball))
	require.NoError(t, os.RemoveAll(rootfs))
	return tarball
}

// hostMirror is the Debian mirror the host's apt uses (deb822 sources or
// sources.list), or "" for debootstrap's default.
func hostMirror() string {
	for _, f := range []string{"/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			switch {
			case len(fields) >= 2 && fields[0] == "URIs:" && !strings.Contains(fields[1], "security"):
				return fields[1]
			case len(fields) >= 3 && fields[0] == "deb" && strings.HasPrefix(fields[1], "http"):
				return fields[1]
			}
		}
	}
	return ""
}

// buildBinaries builds every binary the override runs, and the health
// probe, as the Dockerfile builds them: static, -trimpath, stripped.
func buildBinaries(ctx context.Context, t *testing.T) string {
	t.Helper()
	out := t.TempDir()
	pkgs := map[string]string{"probe": "./deploy/docker/probe"}
	for bin := range localImages {
		pkgs[bin] = "./" + bin
		if _, err := os.Stat(filepath.Join(root, "services", bin)); err == nil {
			pkgs[bin] = "./services/" + bin
		}
	}
	// One build: the packages' names are the binaries' names.
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", out + "/"}
	for bin, pkg := range pkgs {
		require.Equal(t, bin, filepath.Base(pkg))
		args = append(args, pkg)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	runCmd(ctx, t, cmd)
	return out
}

// engine is a dockerd this test started, with its own directories and
// socket, and a client configuration whose CLI plugin is bin/docker-compose.
type engine struct {
	env []string
}

// startEngine starts dockerd with everything of its own under a fresh
// directory (data root, exec root, pidfile, socket), without iptables,
// forwarding or the default bridge (user-defined networks still connect
// containers by name). The cleanup stops it by its pidfile, also when the
// test fails.
func startEngine(ctx context.Context, t *testing.T, compose string) *engine {
	t.Helper()
	_, err := exec.LookPath("dockerd")
	require.NoError(t, err, "apt-get install docker.io")
	// Short: the engine's sockets live under the exec root (108-byte limit).
	dir, err := os.MkdirTemp("", "gg-dockerd-")
	require.NoError(t, err)
	pidfile := filepath.Join(dir, "dockerd.pid")
	sock := filepath.Join(dir, "docker.sock")
	logf, err := os.Create(filepath.Join(dir, "dockerd.log"))
	require.NoError(t, err)
	cmd := exec.Command("dockerd", "--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", pidfile, "--host", "unix://"+sock, "--storage-driver=vfs", "--iptables=false", "--ip-forward=false", "--bridge=none")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		stopEngine(t, pidfile, exited)
		_ = logf.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logf.Name()); err == nil {
				t.Logf("dockerd log (last 4 KiB):\n%s", tail(b, 4096))
			}
		}
		// The vfs data root holds a full copy of every image and
		// container: gigabytes.
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove the engine's directory: %v", err)
		}
	})

	cfg := filepath.Join(dir, "config")
	require.NoError(t, os.MkdirAll(filepath.Join(cfg, "cli-plugins"), 0o755))
	require.NoError(t, os.Symlink(compose, filepath.Join(cfg, "cli-plugins", "docker-compose")))
	e := &engine{env: append(os.Environ(), "DOCKER_HOST=unix://"+sock, "DOCKER_CONFIG="+cfg, "COMPOSE_PROGRESS=plain", "COMPOSE_MENU=false")}
	waitFor(ctx, t, time.Minute, "dockerd answering", func() (bool, error) {
		select {
		case err := <-exited:
			exited <- err
			return false, fmt.Errorf("dockerd exited: %w (log %s)", err, logf.Name())
		default:
		}
		return e.command(ctx, "version", "--format", "{{.Server.Version}}").Run() == nil, nil
	})
	return e
}

// stopEngine sends SIGTERM to the pid of the pidfile (the engine stops
// its containers and containerd), SIGKILL if it has not exited within 60 s.
func stopEngine(t *testing.T, pidfile string, exited chan error) {
	t.Helper()
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Errorf("dockerd pidfile: %v", err)
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Errorf("dockerd pidfile: %v", err)
		return
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("stop dockerd: %v", err)
	}
	select {
	case err := <-exited:
		t.Logf("dockerd stopped: %v", err)
	case <-time.After(60 * time.Second):
		t.Errorf("dockerd (pid %d) did not stop within 60s: killed", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Logf("dockerd killed: %v", <-exited)
	}
}

func (e *engine) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = e.env
	return cmd
}

func (e *engine) run(ctx context.Context, t *testing.T, stdin io.Reader, args ...string) {
	t.Helper()
	cmd := e.command(ctx, args...)
	cmd.Stdin = stdin
	runCmd(ctx, t, cmd)
}

func (e *engine) output(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	cmd := e.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "docker %s: %s", strings.Join(args, " "), stderr.String())
	return string(out)
}

func (e *engine) inspect(ctx context.Context, id, format string) (string, error) {
	out, err := e.command(ctx, "inspect", "--format", format, id).Output()
	if err != nil {
		return "", fmt.Errorf("docker inspect %s: %w", id, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func (e *engine) restartCount(ctx context.Context, id string) (int, error) {
	out, err := e.inspect(ctx, id, "{{.RestartCount}}")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(out)
	if err != nil {
		return 0, fmt.Errorf("restart count: %w", err)
	}
	return n, nil
}

func (e *engine) health(ctx context.Context, id string) (string, error) {
	return e.inspect(ctx, id, "{{if .State.Health}}{{.State.Health.Status}}{{end}}")
}

// waitFor polls cond every 200 ms until it holds, failing the test after
// timeout or on an error.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := cond()
		require.NoError(t, err, what)
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s: not within %s", what, timeout)
		case <-tick.C:
		}
	}
}

// importApp makes the image of one static binary with `docker import`:
// the files of the Dockerfile's runtime stage (the CA bundle, the nonroot
// user and its home, /tmp), /app and /probe; nonroot, /app the entrypoint.
func (e *engine) importApp(ctx context.Context, t *testing.T, bin, probe, image string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64, uid int) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: time.Unix(0, 0)}))
	}
	file := func(name string, mode int64, body []byte) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: time.Unix(0, 0)}))
		_, err := tw.Write(body)
		require.NoError(t, err)
	}
	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return b
	}
	for _, d := range []string{"etc", "etc/ssl", "etc/ssl/certs", "home"} {
		dir(d, 0o755, 0)
	}
	dir("home/nonroot", 0o755, 65532)
	dir("tmp", 0o1777, 0)
	file("etc/ssl/certs/ca-certificates.crt", 0o644, read("/etc/ssl/certs/ca-certificates.crt"))
	file("etc/passwd", 0o644, []byte("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	file("etc/group", 0o644, []byte("nonroot:x:65532:\n"))
	file("app", 0o755, read(bin))
	file("probe", 0o755, read(probe))
	require.NoError(t, tw.Close())
	e.run(ctx, t, &buf, "import", "--change", "USER 65532:65532", "--change", "ENV HOME=/home/nonroot",
		"--change", `ENTRYPOINT ["/app"]`, "-", image)
}

// composeCmd runs `docker compose` (the CLI plugin) on docker-compose.yml
// with the test override, from the repository root.
type composeCmd struct {
	d   *engine
	dir string
}

func (c composeCmd) cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := c.d.command(ctx, append([]string{"compose", "--file", "docker-compose.yml", "--file", "deploy/docker/compose.test.yml"}, args...)...)
	cmd.Dir = c.dir
	return cmd
}

func (c composeCmd) run(ctx context.Context, t *testing.T, args ...string) {
	t.Helper()
	runCmd(ctx, t, c.cmd(ctx, args...))
}

func (c composeCmd) output(ctx context.Context, t *testing.T, args ...string) string {
	t.Helper()
	cmd := c.cmd(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "docker compose %s: %s\n%s", strings.Join(args, " "), stderr.String(), out)
	return string(out)
}

// placeOrders runs loadgen in a container of the project (the compose
// file's loadgen service, on its network, with the development
// credentials): n good orders at rate a second, each followed with
// GetOrder to CONFIRMED or CANCELLED.
func (c composeCmd) placeOrders(ctx context.Context, n, rate int, flags ...string) (loadSummary, error) {
	args := []string{"run", "--rm", "--no-deps", "-T", "loadgen",
		"-order-addr", "order:50051", "-inventory-addr", "inventory:50053", "-dev-dir", "/home/nonroot/dev",
		"-restock", "1000000", "-mix", "good=100", "-retry-fraction", "0", "-count", strconv.Itoa(n), "-rate", strconv.Itoa(rate),
		"-follow-timeout", "3m", "-json", "-quiet"}
	cmd := c.cmd(ctx, append(args, flags...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var s loadSummary
	if jerr := json.Unmarshal(out, &s); jerr != nil {
		return s, fmt.Errorf("loadgen: %w, %w: %s\n%s", err, jerr, stderr.String(), out)
	}
	// Exit 1 (an order not as owed) still prints the summary, which
	// requireAllConfirmed reports.
	return s, nil
}

// logs prints the stack's state and its last log lines, for a failure.
func (c composeCmd) logs(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{{"ps", "--all"}, {"logs", "--no-color", "--tail", "40"}} {
		out, err := c.cmd(ctx, args...).CombinedOutput()
		t.Logf("docker compose %s (err %v):\n%s", strings.Join(args, " "), err, out)
	}
}

// runCmd runs cmd and fails the test with its output if it fails.
func runCmd(ctx context.Context, t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var out bytes.Buffer
	if cmd.Stdout == nil {
		cmd.Stdout = &out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = &out
	}
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	require.NoError(t, err, "%s: %s", strings.Join(cmd.Args, " "), tail(out.Bytes(), 8192))
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

package docker_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"github.com/stretchr/testify/require"
)

// instruction is one Dockerfile instruction: its keyword (upper case), its
// --flags and the rest of the line, continuation lines joined.
type instruction struct {
	cmd   string
	flags []string
	args  string
}

// parseDockerfile reads the instructions of a Dockerfile: comments and
// parser directives dropped, lines ending in a backslash joined (the
// subset of the syntax deploy/docker/Dockerfile uses; no heredocs).
func parseDockerfile(t *testing.T, path string) []instruction {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer func() { _ = f.Close() }()
	var (
		out  []instruction
		line strings.Builder
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			line.WriteString(cont + " ")
			continue
		}
		line.WriteString(text)
		fields := strings.Fields(line.String())
		line.Reset()
		if len(fields) == 0 {
			continue
		}
		in := instruction{cmd: strings.ToUpper(fields[0])}
		rest := fields[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "--") {
			in.flags = append(in.flags, rest[0])
			rest = rest[1:]
		}
		in.args = strings.Join(rest, " ")
		out = append(out, in)
	}
	require.NoError(t, sc.Err())
	require.Zero(t, line.Len(), "%s ends in a continuation", path)
	return out
}

// args expands ${NAME} and $NAME from vars, as the Dockerfile's ARGs are.
func expand(s string, vars map[string]string) string {
	return os.Expand(s, func(k string) string { return vars[k] })
}

func TestDockerfileBaseImagesArePinnedAndTheRuntimeIsNonRoot(t *testing.T) {
	ins := parseDockerfile(t, "Dockerfile")
	vars := map[string]string{}
	var stages []string
	var user string
	for _, in := range ins {
		switch in.cmd {
		case "ARG":
			if k, v, ok := strings.Cut(in.args, "="); ok {
				vars[k] = v
			}
		case "FROM":
			f := strings.Fields(expand(in.args, vars))
			image := f[0]
			if image != "scratch" && !slices.Contains(stages, image) {
				require.Regexp(t, pinned, image, "FROM %s is not pinned to a version or digest", image)
			}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				stages = append(stages, f[2])
			}
			user = ""
		case "USER":
			user = in.args
		}
	}
	// The last stage is the image: it must not run as root.
	require.NotEmpty(t, user, "the runtime stage sets no USER: it would run as root")
	require.NotRegexp(t, `^(root|0)(:|$)`, user)
}

// TestDockerfileBuildsInAnEmptyDirectory replays the build stage of
// deploy/docker/Dockerfile without Docker: each COPY copies exactly what
// it names (COPY . . everything .dockerignore lets through) into an empty
// directory, and each RUN that runs go runs there, for every SERVICE that
// docker-compose.yml builds. A module added to go.work and not copied
// before `go mod download` fails here, as it would fail the image. The
// module and build caches are the test's own (GOMODCACHE, GOCACHE), so a
// warm machine replays it in seconds.
func TestDockerfileBuildsInAnEmptyDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary of the image")
	}
	ins := parseDockerfile(t, "Dockerfile")
	ignore, err := os.Open(filepath.Join(root, ".dockerignore"))
	require.NoError(t, err)
	patterns, err := ignorefile.ReadAll(ignore)
	require.NoError(t, ignore.Close())
	require.NoError(t, err)
	pm, err := patternmatcher.New(patterns)
	require.NoError(t, err)
	// What must never reach the daemon: history, built tools, and the
	// development credentials' private keys.
	for _, path := range []string{".git/config", "bin/buf", "tools/buf/go.mod", ".dev/pki/ca.key", ".dev/jwt/issuer.jwk"} {
		ignored, err := pm.MatchesOrParentMatches(path)
		require.NoError(t, err)
		require.True(t, ignored, ".dockerignore lets %s into the build context", path)
	}

	var serviceArgs []string
	for _, s := range loadProject(t).Services {
		if b := binaryOf(s); b != "" && !slices.Contains(serviceArgs, b) {
			serviceArgs = append(serviceArgs, b)
		}
	}
	slices.Sort(serviceArgs)
	require.NotEmpty(t, serviceArgs)

	ctxDir := t.TempDir() // the image's filesystem root
	out := t.TempDir()    // stands for /out and the other absolute paths
	vars := map[string]string{}
	workdir := ctxDir
	stage := 0
	var runs []instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			stage++
		}
		if stage != 1 {
			// Only the build stage runs commands; the runtime stage copies.
			continue
		}
		switch in.cmd {
		case "ARG":
			k, v, _ := strings.Cut(in.args, "=")
			vars[k] = v
		case "WORKDIR":
			workdir = filepath.Join(ctxDir, in.args)
			require.NoError(t, os.MkdirAll(workdir, 0o755))
		case "COPY":
			require.Empty(t, in.flags, "COPY %s: flags are not replayed", in.args)
			f := strings.Fields(in.args)
			srcs, dst := f[:len(f)-1], f[len(f)-1]
			for _, src := range srcs {
				copyContext(t, pm, src, filepath.Join(workdir, dst), strings.HasSuffix(dst, "/") || len(srcs) > 1 || src == ".")
			}
		case "RUN":
			if !regexp.MustCompile(`(^|[\s;&|])go\s`).MatchString(in.args) {
				continue // file staging for the runtime stage
			}
			runs = append(runs, in)
			if !strings.Contains(in.args, "${SERVICE}") {
				runGo(t, in.args, workdir, out, vars, "")
				continue
			}
			for _, s := range serviceArgs {
				runGo(t, in.args, workdir, out, vars, s)
			}
		}
	}
	require.NotEmpty(t, runs, "the Dockerfile's build stage runs no go command")
}

// runGo runs a RUN instruction's shell command in dir with SERVICE set,
// absolute paths other than the module and build caches under out.
func runGo(t *testing.T, script, dir, out string, vars map[string]string, service string) {
	t.Helper()
	script = strings.ReplaceAll(script, " /out/", " "+out+"/out/")
	script = strings.ReplaceAll(script, " /out ", " "+out+"/out ")
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	// The ARGs first: SERVICE's default (none) yields to the one built.
	env := os.Environ()
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	cmd.Env = append(env, "SERVICE="+service, "GOWORK=", "GOFLAGS=", "CGO_ENABLED=0")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "RUN %s (SERVICE=%s) failed in the replayed image:\n%s", script, service, b)
}

// copyContext copies src, relative to the build context (the repository
// root), to dst as COPY does: a directory's contents, minus what
// .dockerignore excludes.
func copyContext(t *testing.T, pm *patternmatcher.PatternMatcher, src, dst string, dstIsDir bool) {
	t.Helper()
	from := filepath.Join(root, src)
	info, err := os.Stat(from)
	require.NoError(t, err, "COPY %s: not in the build context", src)
	if !info.IsDir() {
		ignored, err := pm.MatchesOrParentMatches(filepath.Clean(src))
		require.NoError(t, err)
		require.False(t, ignored, "COPY %s: .dockerignore excludes it", src)
		if dstIsDir {
			dst = filepath.Join(dst, filepath.Base(src))
		}
		copyFile(t, from, dst)
		return
	}
	err = filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		if rel != "." {
			ignored, err := pm.MatchesOrParentMatches(rel)
			if err != nil {
				return err
			}
			if ignored {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		inner, err := filepath.Rel(from, path)
		if err != nil {
			return err
		}
		if d.IsDir() || !d.Type().IsRegular() {
			return nil
		}
		copyFile(t, path, filepath.Join(dst, inner))
		return nil
	})
	require.NoError(t, err)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
	in, err := os.Open(from)
	require.NoError(t, err)
	defer func() { _ = in.Close() }()
	out, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

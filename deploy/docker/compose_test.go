package docker_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/goodgo/goodgo/platform/event"
)

// root is the repository root: the compose file's directory and the
// image's build context.
const root = "../.."

// services are the binaries under services/: they read their settings
// through platform/config, and list what they read with `<binary> config`.
var services = []string{"order", "payment", "inventory", "orchestrator", "outbox-relay"}

// testPorts are the host ports of the PostgreSQL and Redis the tests use:
// the demo must leave them free.
var testPorts = []string{"5432", "6379"}

// loadProject parses docker-compose.yml as `docker compose` does, without
// the caller's environment (the file must not depend on it).
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithInterpolation(true))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "docker-compose.yml does not load")
	return p
}

// binaryOf is the binary a service of the compose file runs: the build
// argument SERVICE of the repository's Dockerfile, or "" for an upstream
// image.
func binaryOf(s types.ServiceConfig) string {
	if s.Build == nil {
		return ""
	}
	if v := s.Build.Args["SERVICE"]; v != nil {
		return *v
	}
	return ""
}

func TestComposeEnvironmentIsWhatTheBinariesRead(t *testing.T) {
	p := loadProject(t)
	bin := t.TempDir()
	pkgs := make([]string, len(services))
	for i, s := range services {
		pkgs[i] = "./services/" + s
	}
	// Built as the image builds them (static, -trimpath), so that the
	// Dockerfile's replay finds them in the build cache.
	build := exec.Command("go", append([]string{"build", "-trimpath", "-o", bin + "/"}, pkgs...)...)
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	seen := map[string]bool{}
	for name, s := range p.Services {
		binary := binaryOf(s)
		if !slices.Contains(services, binary) {
			// goodgoctl and loadgen take flags; upstream images have their
			// own documentation.
			if binary != "" {
				require.Empty(t, s.Environment, "%s runs %s, which reads flags, not the environment", name, binary)
			}
			continue
		}
		seen[binary] = true
		t.Run(name, func(t *testing.T) {
			env := []string{}
			for k, v := range s.Environment {
				require.NotNil(t, v, "%s: %s has no value", name, k)
				env = append(env, k+"="+*v)
			}
			// Only the service's environment: a required variable the file
			// forgets must fail here, not be found in the test's own.
			cmd := exec.Command(filepath.Join(bin, binary), "config")
			cmd.Env = env
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Run(), "%s config with the compose environment: %s", binary, stderr.String())
			read := strings.Fields(stdout.String())
			for k := range s.Environment {
				// The OpenTelemetry SDK reads the standard OTEL_* variables
				// itself (platform/telemetry).
				if strings.HasPrefix(k, "OTEL_") {
					continue
				}
				require.Contains(t, read, k, "%s sets %s, which %s does not read", name, k, binary)
			}
		})
	}
	for _, s := range services {
		require.True(t, seen[s], "docker-compose.yml runs no %s", s)
	}
}

func TestComposeHostPortsAreDistinctAndLeaveTheTestServersFree(t *testing.T) {
	p := loadProject(t)
	used := map[string]string{}
	for name, s := range p.Services {
		for _, port := range s.Ports {
			require.NotEmpty(t, port.Published, "%s: port %d has no fixed host port", name, port.Target)
			require.NotContains(t, testPorts, port.Published, "%s publishes %s, which the tests use on the host", name, port.Published)
			key := port.HostIP + ":" + port.Published + "/" + port.Protocol
			require.Empty(t, used[key], "%s and %s both publish %s", used[key], name, key)
			used[key] = name
		}
		if slices.Contains(services, binaryOf(s)) {
			published := false
			for _, port := range s.Ports {
				published = published || port.Target == 9100
			}
			require.True(t, published, "%s does not publish its ops port 9100 (/metrics)", name)
		}
	}
}

// pinned is an image reference with an exact version: a digest, or a tag
// with a digit in it (postgres:15.10-bookworm, not postgres or
// postgres:latest).
var pinned = regexp.MustCompile(`(@sha256:[0-9a-f]{64}$)|(:[^:/@]*[0-9][^:/@]*$)`)

func TestComposeImagesArePinned(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		if s.Build != nil {
			require.Empty(t, s.Image, "%s: built from the repository, it needs no image name", name)
			continue
		}
		require.Regexp(t, pinned, s.Image, "%s: image %q is not pinned to a version or digest", name, s.Image)
		require.NotContains(t, s.Image, ":latest", name)
	}
}

func TestComposeStartsFromColdInOrder(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		// One-shot jobs and the demo client serve nothing to check.
		if !slices.Contains([]string{"credentials", "kafka-init", "loadgen"}, name) {
			// Every server says when it is ready, so depends_on can wait for it
			// and `docker compose up --wait` means something.
			require.NotNil(t, s.HealthCheck, "%s has no health check", name)
			require.False(t, s.HealthCheck.Disable, name)
			require.NotEmpty(t, s.HealthCheck.Test, name)
		}
		for dep, d := range s.DependsOn {
			ds, ok := p.Services[dep]
			require.True(t, ok, "%s depends on %s, which does not exist", name, dep)
			switch d.Condition {
			case types.ServiceConditionHealthy:
				require.NotNil(t, ds.HealthCheck, "%s waits for %s to be healthy, which has no health check", name, dep)
			case types.ServiceConditionCompletedSuccessfully:
				require.Empty(t, ds.Restart, "%s waits for %s to complete; it must not restart", name, dep)
			default:
				t.Errorf("%s depends on %s with condition %q: it would start before %s is ready", name, dep, d.Condition, dep)
			}
		}
	}
}

func TestComposeCreatesTheTopics(t *testing.T) {
	p := loadProject(t)
	partitions := p.Services["kafka"].Environment["KAFKA_NUM_PARTITIONS"]
	require.NotNil(t, partitions)
	require.Equal(t, "false", *p.Services["kafka"].Environment["KAFKA_AUTO_CREATE_TOPICS_ENABLE"],
		"the demo's Kafka must not create topics on demand: production does not")
	script := strings.Join(p.Services["kafka-init"].Command, " ")
	require.Contains(t, script, "--partitions "+*partitions)
	for _, topic := range event.Topics {
		require.Contains(t, script, topic, "kafka-init does not create %s", topic)
	}
	for _, name := range []string{"order", "orchestrator", "outbox-relay"} {
		require.Equal(t, types.ServiceConditionCompletedSuccessfully, p.Services[name].DependsOn["kafka-init"].Condition,
			"%s uses the topics: it must start after kafka-init", name)
	}
}

func TestComposeMountsExistingFiles(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			_, err := os.Stat(v.Source)
			require.NoError(t, err, "%s mounts %s, which does not exist (docker would mount an empty directory)", name, v.Source)
		}
	}
}

func TestPrometheusScrapesEveryServiceWithTheRules(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(root, "deploy/prometheus/prometheus.yml"))
	require.NoError(t, err)
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	var targets []string
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	p := loadProject(t)
	for name, s := range p.Services {
		if slices.Contains(services, binaryOf(s)) {
			require.Contains(t, targets, name+":9100", "Prometheus does not scrape %s", name)
		}
	}

	// Every rule file is loaded; promtool's unit tests (rule_files: at
	// the top) are not rule files.
	files, err := filepath.Glob(filepath.Join(root, "deploy/prometheus/rules/*.yml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, yaml.Unmarshal(body, &doc), f)
		if _, isTest := doc["tests"]; isTest {
			require.NotContains(t, cfg.RuleFiles, "/etc/prometheus/rules/"+filepath.Base(f), "%s is a promtool test, not rules", f)
			continue
		}
		require.Contains(t, cfg.RuleFiles, "/etc/prometheus/rules/"+filepath.Base(f), "prometheus.yml does not load %s", f)
	}
}

func TestGrafanaIsProvisionedWithTheDashboardsAndDataSources(t *testing.T) {
	p := loadProject(t)
	g, ok := p.Services["grafana"]
	require.True(t, ok)
	mounts := map[string]string{} // repository directory -> container path
	for _, v := range g.Volumes {
		if v.Type == types.VolumeTypeBind {
			rel, err := filepath.Rel(mustAbs(t, root), v.Source)
			require.NoError(t, err)
			mounts[filepath.ToSlash(rel)] = v.Target
		}
	}
	require.Equal(t, "/etc/grafana/provisioning", mounts["deploy/grafana/provisioning"])

	var sources struct {
		Datasources []struct {
			UID, Type, URL string
			IsDefault      bool `yaml:"isDefault"`
		} `yaml:"datasources"`
	}
	readYAML(t, "deploy/grafana/provisioning/datasources/goodgo.yml", &sources)
	provisioned := map[string]bool{}
	for _, ds := range sources.Datasources {
		provisioned[ds.Type] = true
		host, _, _ := strings.Cut(strings.TrimPrefix(ds.URL, "http://"), ":")
		require.Contains(t, p.Services, host, "data source %s points at %s, which is not a compose service", ds.UID, ds.URL)
		if ds.Type == "prometheus" {
			// The dashboards choose their data source through a variable,
			// which starts on the default.
			require.True(t, ds.IsDefault, "the Prometheus data source must be the default")
		}
	}
	require.True(t, provisioned["prometheus"] && provisioned["jaeger"], "Prometheus and Jaeger must both be data sources")

	var providers struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "deploy/grafana/provisioning/dashboards/goodgo.yml", &providers)
	require.Len(t, providers.Providers, 1)
	require.Equal(t, mounts["deploy/grafana/dashboards"], providers.Providers[0].Options.Path,
		"the dashboards provider must read where deploy/grafana/dashboards is mounted")

	dashboards, err := filepath.Glob(filepath.Join(root, "deploy/grafana/dashboards/*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, dashboards)
	for _, f := range dashboards {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		refs := regexp.MustCompile(`"datasource":\s*\{[^}]*"type":\s*"([^"]+)"`).FindAllSubmatch(raw, -1)
		require.NotEmpty(t, refs, "%s names no data source", f)
		for _, m := range refs {
			require.True(t, provisioned[string(m[1])], "%s queries a %s data source, which is not provisioned", f, m[1])
		}
	}
}

func readYAML(t *testing.T, rel string, v any) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, rel))
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(raw, v), rel)
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	require.NoError(t, err)
	return abs
}

// TestComposeCommandsParse runs the one-shot credentials job as the
// compose file does, into a temporary directory, and gives the demo
// client its compose flags: a renamed or mistyped flag fails here.
func TestComposeCommandsParse(t *testing.T) {
	p := loadProject(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", bin+"/", "./goodgoctl", "./loadgen")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	const volumeDir = "/home/nonroot/dev" // where the credentials volume holds them
	dev := t.TempDir()
	creds := p.Services["credentials"]
	require.Equal(t, "goodgoctl", binaryOf(creds))
	args := slices.Clone([]string(creds.Command))
	require.Contains(t, args, volumeDir)
	args[slices.Index(args, volumeDir)] = dev
	cmd := exec.Command(filepath.Join(bin, "goodgoctl"), args...)
	cmd.Env = []string{}
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "goodgoctl %v: %s", args, out)
	// The binaries' certificates must name the hosts they are dialled by.
	for _, s := range services {
		require.Contains(t, args, s, "the credentials do not name host %s", s)
	}

	// With no credentials in its directory the client stops at reading
	// them: its flags parsed (a bad one stops it before, naming the flag).
	lg := p.Services["loadgen"]
	require.Equal(t, "loadgen", binaryOf(lg))
	args = slices.Clone([]string(lg.Command))
	require.Contains(t, args, volumeDir)
	empty := t.TempDir()
	args[slices.Index(args, volumeDir)] = empty
	cmd = exec.Command(filepath.Join(bin, "loadgen"), args...)
	cmd.Env = []string{}
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), empty+"/", "loadgen %v did not get past its flags", args)
}

// overrideFile is the compose test's override (make compose-test).
const overrideFile = "deploy/docker/compose.test.yml"

// loadWithOverride parses docker-compose.yml with the compose test's
// override, as `docker compose -f … -f …` does.
func loadWithOverride(t *testing.T) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml"), filepath.Join(root, overrideFile)},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithInterpolation(true))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err, "docker-compose.yml with %s does not load", overrideFile)
	return p
}

// TestComposeTestOverrideChangesOnlyTheImages: the compose test runs what
// users run. The override selects the locally built images and publishes
// no port; each binary keeps the environment, command, health check,
// restart policy and start order of docker-compose.yml; the development
// broker in Kafka's place has the topics kafka-init creates.
func TestComposeTestOverrideChangesOnlyTheImages(t *testing.T) {
	base := loadProject(t)
	p := loadWithOverride(t)

	var left []string
	for name := range p.DisabledServices {
		left = append(left, name)
	}
	slices.Sort(left)
	require.Equal(t, []string{"grafana", "jaeger", "prometheus"}, left, "only what has no local image is left out")
	for name, s := range p.Services {
		require.Nil(t, s.Build, "%s: the test imports its images, it builds none", name)
		require.True(t, strings.HasPrefix(s.Image, "goodgo-test/"), "%s: image %q is not one the test makes", name, s.Image)
		require.Equal(t, "never", s.PullPolicy, "%s: no registry is reachable", name)
		require.Empty(t, s.Ports, "%s publishes a port on the host", name)
		for dep := range s.DependsOn {
			require.Contains(t, p.Services, dep, "%s depends on %s, which the override leaves out", name, dep)
		}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				_, err := os.Stat(v.Source)
				require.NoError(t, err, "%s mounts %s, which does not exist", name, v.Source)
			}
		}
		b := base.Services[name]
		if bin := binaryOf(b); bin != "" {
			require.Equal(t, "goodgo-test/"+bin+":local", s.Image, name)
			require.Equal(t, b.Environment, s.Environment, "%s: the environment differs from docker-compose.yml's", name)
			require.Equal(t, b.Command, s.Command, name)
			require.Equal(t, b.Entrypoint, s.Entrypoint, name)
			require.Equal(t, b.HealthCheck, s.HealthCheck, name)
			require.Equal(t, b.Restart, s.Restart, name)
			require.Equal(t, b.DependsOn, s.DependsOn, name)
			require.Equal(t, b.Volumes, s.Volumes, name)
		}
	}

	kafka := p.Services["kafka"]
	require.Equal(t, "goodgo-test/devbroker:local", kafka.Image)
	require.Equal(t, strings.Join(event.Topics, ","), *kafka.Environment["KAFKA_TOPICS"])
	require.Equal(t, *base.Services["kafka"].Environment["KAFKA_NUM_PARTITIONS"], *kafka.Environment["KAFKA_PARTITIONS"])
	require.Equal(t, "kafka:9092", *kafka.Environment["KAFKA_ADVERTISED_ADDR"], "the address the services dial")
	// Every variable set is one the development broker reads (its -h
	// names each flag's variable).
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./devbroker")
	build.Dir = root
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	out, _ = exec.Command(filepath.Join(bin, "devbroker"), "-h").CombinedOutput()
	for k := range kafka.Environment {
		require.Contains(t, string(out), "("+k+")", "the override sets %s, which devbroker does not read", k)
	}
	script := strings.Join(p.Services["kafka-init"].Command, " ")
	for _, topic := range event.Topics {
		require.Contains(t, script, topic, "kafka-init does not check %s", topic)
	}
	require.Contains(t, script, "with "+*kafka.Environment["KAFKA_PARTITIONS"]+" partitions")
}

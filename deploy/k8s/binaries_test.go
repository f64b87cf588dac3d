package k8s

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The five binaries, built from this tree, accept each overlay's settings
// in production mode inside Kubernetes, and read every variable the
// manifests set: each Deployment's environment (ConfigMaps, values, and
// stand-ins for the Secrets) goes through the binary's `config` command,
// which loads the configuration as serving would, without serving.
func TestBinariesAcceptTheSettings(t *testing.T) {
	t.Parallel()
	bin := t.TempDir()
	args := []string{"build", "-o", bin + string(filepath.Separator)}
	for svc := range seed {
		args = append(args, "./services/"+svc)
	}
	build := exec.Command("go", args...)
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, dir := range overlays {
		t.Run(dir, func(t *testing.T) {
			m, err := render(filesys.MakeFsOnDisk(), dir)
			if err != nil {
				t.Fatal(err)
			}
			// The local overlay gets what secrets.sh makes; production,
			// stand-ins of the kind its operator would store.
			secrets := standIns(strings.Contains(dir, "production"))
			if strings.HasSuffix(dir, "local") {
				made, _ := localSecrets(t)
				secrets = func(name, key string) string { return made[name][key] }
			}
			checked := 0
			for _, w := range m.workloads() {
				if !w.app {
					continue
				}
				binary := strings.TrimSuffix(w.id[strings.Index(w.id, "/")+1:], "-migrate")
				for _, c := range w.spec.Containers {
					// The migrate command reads MIGRATE_DATABASE_URL alone,
					// not the server's configuration.
					if slices.Equal(c.Args, []string{"migrate"}) {
						continue
					}
					env := environment(t, m, c, secrets)
					cmd := exec.Command(filepath.Join(bin, binary), "config")
					cmd.Env = append(env, "KUBERNETES_SERVICE_HOST=10.96.0.1")
					var stdout, stderr bytes.Buffer
					cmd.Stdout, cmd.Stderr = &stdout, &stderr
					if err := cmd.Run(); err != nil {
						t.Errorf("%s container %s: `%s config` refuses the settings: %v\n%s", w.id, c.Name, binary, err, stderr.String())
						continue
					}
					read := strings.Fields(stdout.String())
					for _, kv := range env {
						name, _, _ := strings.Cut(kv, "=")
						if !slices.Contains(read, name) && !slices.Contains(runtimeVars, name) {
							t.Errorf("%s container %s: sets %s, which %s does not read", w.id, c.Name, name, binary)
						}
					}
					checked++
				}
			}
			if checked != len(seed)+1 { // the five Deployments and order's migrate-read-model
				t.Fatalf("checked %d containers, want %d", checked, len(seed)+1)
			}
		})
	}
}

// environment is what the kubelet would give container c.
func environment(t *testing.T, m *manifests, c corev1.Container, secrets func(name, key string) string) []string {
	t.Helper()
	var env []string
	for _, f := range c.EnvFrom {
		if f.ConfigMapRef == nil {
			t.Fatalf("container %s: envFrom other than a ConfigMap", c.Name)
		}
		for k, v := range m.configMaps[f.ConfigMapRef.Name].Data {
			env = append(env, k+"="+v)
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			env = append(env, e.Name+"="+secrets(e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key))
		default:
			t.Fatalf("container %s: %s from neither a value nor a Secret", c.Name, e.Name)
		}
	}
	return env
}

// standIns returns plausible Secret values: fresh keys (each its own, as the
// binaries require of different purposes) and connection URLs of the
// overlay's kind.
func standIns(production bool) func(name, key string) string {
	return func(name, key string) string {
		svc := strings.TrimSuffix(strings.TrimSuffix(name, "-secrets"), "-migrate")
		host, tls := "postgres", "disable"
		if production {
			host, tls = "db.example.com", "verify-full"
		}
		switch {
		case strings.HasSuffix(key, "_KEYS"):
			k := make([]byte, 32)
			_, _ = rand.Read(k)
			return "k1:" + base64.StdEncoding.EncodeToString(k)
		case key == "DATABASE_URL" || key == "MIGRATE_DATABASE_URL":
			return "postgres://goodgo_" + svc + ":pw@" + host + ":5432/goodgo_" + svc + "?sslmode=" + tls
		case key == "OUTBOX_DATABASE_URLS":
			var urls []string
			for _, db := range []string{"order", "payment", "inventory"} {
				urls = append(urls, "postgres://goodgo_relay:pw@"+host+":5432/goodgo_"+db+"?sslmode="+tls)
			}
			return strings.Join(urls, ",")
		case key == "REDIS_URL" && production:
			return "rediss://:pw@redis-0.redis.example.com:6379/0"
		case key == "REDIS_URL":
			return "redis://redis:6379/0"
		}
		return "unexpected " + name + "/" + key
	}
}

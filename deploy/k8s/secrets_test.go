package k8s

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// localSecrets runs overlays/local/secrets.sh (DRY_RUN) with a stand-in
// kubectl that prints its arguments, one a line, a record per call, and
// returns the Secrets and ConfigMaps it would make: name -> key -> value
// (files read). goodgoctl runs for real, so the keys and certificates are
// the script's own.
func localSecrets(t *testing.T) (secrets, configMaps map[string]map[string]string) {
	t.Helper()
	stub := t.TempDir()
	const sep = "--end-of-call--"
	kubectl := "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\necho " + sep + "\n"
	if err := os.WriteFile(filepath.Join(stub, "kubectl"), []byte(kubectl), 0o755); err != nil { //nolint:gosec // an executable stand-in
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "deploy/k8s/overlays/local/secrets.sh")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "DRY_RUN=1", "GOODGO_K8S_DEV_DIR="+t.TempDir(),
		"PATH="+stub+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("secrets.sh: %v\n%s", err, stderr.String())
	}
	secrets, configMaps = map[string]map[string]string{}, map[string]map[string]string{}
	for _, call := range strings.Split(stdout.String(), sep+"\n") {
		args := strings.Split(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(call), "---")), "\n")
		var into map[string]map[string]string
		name := ""
		for i, a := range args {
			switch {
			case a == "generic" && i > 0 && args[i-1] == "secret" && i+1 < len(args):
				into, name = secrets, args[i+1]
			case a == "configmap" && i+1 < len(args):
				into, name = configMaps, args[i+1]
			}
		}
		if into == nil {
			continue
		}
		data := map[string]string{}
		for _, a := range args {
			if kv, ok := strings.CutPrefix(a, "--from-literal="); ok {
				k, v, _ := strings.Cut(kv, "=")
				data[k] = v
			}
			if kv, ok := strings.CutPrefix(a, "--from-file="); ok {
				k, path, _ := strings.Cut(kv, "=")
				if !filepath.IsAbs(path) {
					path = filepath.Join(root, path)
				}
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("secrets.sh: %s/%s: %v", name, k, err)
				}
				data[k] = string(b)
			}
		}
		into[name] = data
	}
	return secrets, configMaps
}

// Every Secret and external ConfigMap the local overlay references, with
// every key, is one secrets.sh makes.
func TestLocalSecretsScriptMakesWhatTheOverlayReferences(t *testing.T) {
	t.Parallel()
	secrets, configMaps := localSecrets(t)
	m, err := render(filesys.MakeFsOnDisk(), "overlays/local")
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for _, w := range m.workloads() {
		for _, v := range w.spec.Volumes {
			switch {
			case v.Secret != nil:
				refs++
				s, ok := secrets[v.Secret.SecretName]
				if !ok {
					t.Errorf("%s: Secret %s is not made by secrets.sh", w.id, v.Secret.SecretName)
				}
				for _, it := range v.Secret.Items {
					if _, ok := s[it.Key]; !ok {
						t.Errorf("%s: Secret %s has no key %s", w.id, v.Secret.SecretName, it.Key)
					}
				}
				if strings.HasSuffix(v.Secret.SecretName, "-tls") {
					for _, k := range []string{"tls.crt", "tls.key", "ca.crt"} {
						if _, ok := s[k]; !ok {
							t.Errorf("%s: Secret %s has no %s", w.id, v.Secret.SecretName, k)
						}
					}
				}
			case v.ConfigMap != nil && m.configMaps[v.ConfigMap.Name] == nil:
				refs++
				if _, ok := configMaps[v.ConfigMap.Name]; !ok {
					t.Errorf("%s: ConfigMap %s is neither rendered nor made by secrets.sh", w.id, v.ConfigMap.Name)
				}
			}
		}
		for _, c := range append(w.spec.InitContainers, w.spec.Containers...) {
			for _, e := range c.Env {
				if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
					continue
				}
				refs++
				ref := e.ValueFrom.SecretKeyRef
				if _, ok := secrets[ref.Name][ref.Key]; !ok {
					t.Errorf("%s container %s: %s: Secret %s key %s is not made by secrets.sh", w.id, c.Name, e.Name, ref.Name, ref.Key)
				}
			}
		}
	}
	if refs < 20 {
		t.Fatalf("only %d references checked", refs)
	}
}

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// These tests check the deployment files in configs/ with the tools that read them:
// promtool, the OTel Collector, docker-compose, picket validate and systemd-analyze.

// needProgram returns the path of a program, skipping the test (or failing it when
// required()) when it is not on PATH; install says how to get it.
func needProgram(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if required() {
			t.Fatalf("%s is required (PICKET_E2E_REQUIRE/CI set) but not on PATH: %s", name, install)
		}
		t.Skipf("%s not on PATH (%s); set PICKET_E2E_REQUIRE=1 to fail instead", name, install)
	}
	return p
}

// runTool runs a program with a deadline and returns its combined output.
func runTool(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// testGossipKey returns a fresh gossip key as `picket keygen` prints it: standard base64 of
// 32 random bytes.
func testGossipKey() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// environWithout returns the process environment without the named variables.
func environWithout(names ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(names, k) {
			env = append(env, kv)
		}
	}
	return env
}

// validatePicketConfig runs `picket validate` on body with exactly env (plus PATH), failing
// the test with picket's message when it refuses.
func validatePicketConfig(t *testing.T, what, body string, env map[string]string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "picket.yaml")
	if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		vars = append(vars, k+"="+v)
	}
	if out, err := runTool(t, vars, binary(t), "validate", f); err != nil {
		t.Errorf("picket validate of %s: %v\n%s", what, err, out)
	}
}

// configVar matches ${VAR} and ${VAR:-default} in a picket config.
var configVar = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}`)

func TestPrometheusConfigValid(t *testing.T) {
	promtool := needTool(t, "promtool")
	if out, err := runTool(t, nil, promtool, "check", "config", "../configs/prometheus.yml"); err != nil {
		t.Errorf("promtool check config configs/prometheus.yml: %v\n%s", err, out)
	}
}

func TestCollectorConfigValid(t *testing.T) {
	bin := otelcolBinary(t)
	if out, err := runTool(t, nil, bin, "validate", "--config", "../configs/otelcol.yaml"); err != nil {
		t.Errorf("otelcol-picket validate --config configs/otelcol.yaml: %v\n%s", err, out)
	}
}

// TestComposeConfig has docker-compose check configs/docker-compose.yaml, refuse it without a
// gossip key, and then validates the picket config each agent service runs with the
// environment compose gives it.
func TestComposeConfig(t *testing.T) {
	compose := needProgram(t, "docker-compose", "apt-get install docker-compose")
	const file = "../configs/docker-compose.yaml"
	base := environWithout("PICKET_GOSSIP_KEY", "PICKET_TOKEN", "PICKET_IMAGE", "PICKET_LOG_LEVEL")

	out, err := runTool(t, base, compose, "-f", file, "config", "-q")
	if err == nil || !strings.Contains(out, "PICKET_GOSSIP_KEY") {
		t.Errorf("docker-compose config without PICKET_GOSSIP_KEY: %v, want a refusal naming it:\n%s", err, out)
	}
	withKey := append(slices.Clone(base), "PICKET_GOSSIP_KEY="+testGossipKey())
	if out, err := runTool(t, withKey, compose, "-f", file, "config", "-q"); err != nil {
		t.Fatalf("docker-compose -f configs/docker-compose.yaml config -q: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, compose, "-f", file, "config")
	cmd.Env = withKey
	resolved, err := cmd.Output() // the YAML alone, without warnings on stderr
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, resolved)
	}
	var spec struct {
		Services map[string]struct {
			Image       string            `yaml:"image"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
			Volumes     []composeVolume   `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(resolved, &spec); err != nil {
		t.Fatalf("decode docker-compose config output: %v\n%s", err, resolved)
	}
	agents := 0
	for name, svc := range spec.Services {
		if !strings.HasPrefix(svc.Image, "picket:") {
			continue
		}
		agents++
		var cfg string
		for _, v := range svc.Volumes {
			if v.Target == "/etc/picket/picket.yaml" {
				cfg = v.Source
			}
		}
		if cfg == "" || !slices.Contains(svc.Command, "/etc/picket/picket.yaml") {
			t.Errorf("service %s: command %v does not run a config mounted at /etc/picket/picket.yaml (volumes %v)", name, svc.Command, svc.Volumes)
			continue
		}
		body, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatalf("service %s: %v", name, err)
		}
		if svc.Environment["PICKET_NODE_NAME"] != name {
			t.Errorf("service %s: PICKET_NODE_NAME=%q, want the service name", name, svc.Environment["PICKET_NODE_NAME"])
		}
		for k, v := range svc.Environment {
			if !strings.HasPrefix(k, "PICKET_SEED_") {
				continue
			}
			if host, _, err := net.SplitHostPort(v); err != nil || spec.Services[host].Image == "" {
				t.Errorf("service %s: %s=%s is not a compose service's gossip address", name, k, v)
			}
		}
		validatePicketConfig(t, fmt.Sprintf("%s as service %s runs it", filepath.Base(cfg), name), string(body), svc.Environment)
	}
	if agents != 3 {
		t.Errorf("compose file has %d picket agents, want 3", agents)
	}
}

// composeVolume is one volume of a service in `docker-compose config` output: the short
// syntax "source:target[:mode]" (docker-compose 1.x) or the long one (Compose v2).
type composeVolume struct {
	Source string `yaml:"source"`
	Target string `yaml:"target"`
}

// UnmarshalYAML accepts both syntaxes.
func (v *composeVolume) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		parts := strings.Split(n.Value, ":")
		if len(parts) < 2 {
			return fmt.Errorf("line %d: volume %q is not source:target", n.Line, n.Value)
		}
		v.Source, v.Target = parts[0], parts[1]
		return nil
	}
	type plain composeVolume
	return n.Decode((*plain)(v))
}

// k8sObject holds the fields of a Kubernetes manifest that TestKubernetesManifests checks.
type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Resources  []string          `yaml:"resources"` // Kustomization
	Spec       struct {
		ClusterIP                string `yaml:"clusterIP"`
		PublishNotReadyAddresses bool   `yaml:"publishNotReadyAddresses"`
		ServiceName              string `yaml:"serviceName"`
		Replicas                 int    `yaml:"replicas"`
		Template                 struct {
			Spec struct {
				Containers []struct {
					Name string   `yaml:"name"`
					Args []string `yaml:"args"`
					Env  []struct {
						Name      string `yaml:"name"`
						ValueFrom struct {
							SecretKeyRef *struct {
								Name     string `yaml:"name"`
								Key      string `yaml:"key"`
								Optional bool   `yaml:"optional"`
							} `yaml:"secretKeyRef"`
						} `yaml:"valueFrom"`
					} `yaml:"env"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name      string `yaml:"name"`
					ConfigMap *struct {
						Name string `yaml:"name"`
					} `yaml:"configMap"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

// readManifests decodes every YAML document of every .yaml file in dir, by kind and name.
func readManifests(t *testing.T, dir string) map[string]k8sObject {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	objs := map[string]k8sObject{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			if err := dec.Decode(&o); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if o.Kind == "" || o.APIVersion == "" {
				t.Errorf("%s: a document without kind or apiVersion", f)
				continue
			}
			objs[o.Kind+"/"+o.Metadata.Name] = o
		}
	}
	return objs
}

// TestKubernetesManifests checks that the manifests fit together (the StatefulSet's Service,
// ConfigMap and Secret exist and are what it expects) and that picket accepts the config in
// the ConfigMap with the environment the StatefulSet gives it.
func TestKubernetesManifests(t *testing.T) {
	const dir = "../configs/kubernetes"
	objs := readManifests(t, dir)
	obj := func(key string) k8sObject {
		t.Helper()
		o, ok := objs[key]
		if !ok {
			t.Fatalf("%s: no %s", dir, key)
		}
		return o
	}
	kust := obj("Kustomization/")
	for _, r := range kust.Resources {
		if _, err := os.Stat(filepath.Join(dir, r)); err != nil {
			t.Errorf("kustomization.yaml lists %s: %v", r, err)
		}
	}
	sts := obj("StatefulSet/picket")
	svc := obj("Service/" + sts.Spec.ServiceName)
	if svc.Spec.ClusterIP != "None" || !svc.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: clusterIP %q publishNotReadyAddresses %v; want a headless Service publishing not-ready pods",
			sts.Spec.ServiceName, svc.Spec.ClusterIP, svc.Spec.PublishNotReadyAddresses)
	}
	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("StatefulSet picket: %d containers, want 1", len(sts.Spec.Template.Spec.Containers))
	}
	c := sts.Spec.Template.Spec.Containers[0]
	i := slices.Index(c.Args, "-c")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container args %v: no -c FILE", c.Args)
	}
	cfgPath := c.Args[i+1]
	var cfg string
	for _, m := range c.VolumeMounts {
		if m.MountPath != path.Dir(cfgPath) {
			continue
		}
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cfg = obj("ConfigMap/" + v.ConfigMap.Name).Data[path.Base(cfgPath)]
			}
		}
	}
	if cfg == "" {
		t.Fatalf("no ConfigMap mounted with %s for -c %s", path.Base(cfgPath), cfgPath)
	}

	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = ""
		if ref := e.ValueFrom.SecretKeyRef; ref != nil {
			sec := obj("Secret/" + ref.Name)
			_, inData := sec.Data[ref.Key]
			if _, ok := sec.StringData[ref.Key]; !ok && !inData && !ref.Optional {
				t.Errorf("env %s: Secret %s has no key %q", e.Name, ref.Name, ref.Key)
			}
		}
	}
	for _, m := range configVar.FindAllStringSubmatch(cfg, -1) {
		if _, ok := env[m[1]]; !ok && m[2] == "" {
			t.Errorf("the ConfigMap's config uses ${%s}, which the StatefulSet does not set", m[1])
		}
	}

	var parsed struct {
		Cluster struct {
			Discovery struct {
				DNS struct {
					Name string `yaml:"name"`
				} `yaml:"dns"`
			} `yaml:"discovery"`
			Raft struct {
				Voters          int `yaml:"voters"`
				BootstrapExpect int `yaml:"bootstrap_expect"`
			} `yaml:"raft"`
		} `yaml:"cluster"`
	}
	if err := yaml.Unmarshal([]byte(cfg), &parsed); err != nil {
		t.Fatalf("the ConfigMap's picket.yaml: %v", err)
	}
	if !strings.HasPrefix(parsed.Cluster.Discovery.DNS.Name, sts.Spec.ServiceName+".") {
		t.Errorf("cluster.discovery.dns.name %q does not look up the headless Service %s", parsed.Cluster.Discovery.DNS.Name, sts.Spec.ServiceName)
	}
	if r := parsed.Cluster.Raft; r.BootstrapExpect != sts.Spec.Replicas || r.Voters != sts.Spec.Replicas {
		t.Errorf("raft voters %d, bootstrap_expect %d; want both = replicas %d", r.Voters, r.BootstrapExpect, sts.Spec.Replicas)
	}

	// The environment of pod picket-0, as the downward API and the Secret fill it.
	env["POD_NAME"] = sts.Metadata.Name + "-0"
	env["POD_NAMESPACE"] = "monitoring"
	env["POD_IP"] = "10.1.2.3"
	env["PICKET_GOSSIP_KEY"] = testGossipKey()
	validatePicketConfig(t, "the ConfigMap's picket.yaml", cfg, env)
}

// exposure matches systemd-analyze security's summary line.
var exposure = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestSystemdUnit has systemd-analyze verify configs/systemd/picket.service (with picket's
// path pointed at the binary under test) and rate its hardening.
func TestSystemdUnit(t *testing.T) {
	analyze := needProgram(t, "systemd-analyze", "apt-get install systemd")
	b, err := os.ReadFile("../configs/systemd/picket.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(t.TempDir(), "picket.service")
	if err := os.WriteFile(unit, bytes.ReplaceAll(b, []byte("/usr/local/bin/picket"), []byte(binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, nil, analyze, "verify", unit)
	if err != nil || strings.Contains(out, "Unknown key") || strings.Contains(out, "Unknown lvalue") || strings.Contains(out, "Failed to parse") {
		t.Errorf("systemd-analyze verify picket.service: %v\n%s", err, out)
	}

	out, err = runTool(t, nil, analyze, "security", "--offline=yes", unit)
	if strings.Contains(out, "unrecognized option") {
		t.Skipf("systemd-analyze security --offline needs systemd 250 or newer:\n%s", out)
	}
	m := exposure.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v, no exposure level in:\n%s", err, out)
	}
	// 0 is fully locked down, 10 is unprotected; the unit keeps the network and /proc it
	// needs and rates about 1.6.
	if level, _ := strconv.ParseFloat(m[1], 64); level > 2.0 {
		t.Errorf("systemd-analyze security rates picket.service %s exposed, want at most 2.0:\n%s", m[1], out)
	}
}

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

type checkView struct {
	Name   string    `json:"name"`
	Status string    `json:"status"`
	Since  time.Time `json:"since"`
	Nodes  []string  `json:"nodes"`
}

func getChecks(ctx context.Context, base string, header ...string) ([]checkView, error) {
	code, body, err := get(ctx, base+"/v1/checks", header...)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("GET /v1/checks: %d %s", code, body)
	}
	var cs []checkView
	return cs, json.Unmarshal(body, &cs)
}

func findCheck(cs []checkView, name string) (checkView, bool) {
	for _, c := range cs {
		if c.Name == name {
			return c, true
		}
	}
	return checkView{}, false
}

// TestEmbeddedDefault runs `picket agent` with no config, as `make run` does, and checks what
// a new user sees: /healthz, the self check passing, host and check metrics that promtool
// accepts, and a graceful stop on SIGTERM.
func TestEmbeddedDefault(t *testing.T) {
	promtool := needTool(t, "promtool")
	const base = "http://127.0.0.1:7948"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, _, err := get(ctx, base+"/healthz"); err == nil {
		t.Fatal("something already listens on 127.0.0.1:7948; stop it to run this test")
	}
	dir := t.TempDir()
	p := start(t, []string{"PICKET_DATA_DIR=" + filepath.Join(dir, "data"), "HOME=" + dir, "XDG_STATE_HOME=" + dir}, "agent")

	eventually(t, 20*time.Second, "healthz answers", func() error {
		code, _, err := get(ctx, base+"/healthz")
		if err == nil && code != 200 {
			err = fmt.Errorf("status %d", code)
		}
		return err
	})
	eventually(t, 30*time.Second, "self check passing", func() error {
		cs, err := getChecks(ctx, base)
		if err != nil {
			return err
		}
		c, ok := findCheck(cs, "self")
		if !ok || c.Status != "passing" {
			return fmt.Errorf("checks: %+v", cs)
		}
		return nil
	})

	var metrics []byte
	eventually(t, 30*time.Second, "metrics show host and check series", func() error {
		code, body, err := get(ctx, base+"/metrics")
		if err != nil {
			return err
		}
		if code != 200 {
			return fmt.Errorf("status %d", code)
		}
		for _, want := range []string{
			"system_cpu_time_seconds_total", "system_memory_usage_bytes", "system_filesystem_usage_bytes",
			"system_network_io_bytes_total", "picket_check_up", "picket_check_duration_seconds_bucket",
			"picket_check_runs_total", "picket_build_info", "picket_node_load",
		} {
			if !bytes.Contains(body, []byte("\n"+want)) {
				return fmt.Errorf("no %s series yet", want)
			}
		}
		metrics = body
		return nil
	})
	if !bytes.Contains(metrics, []byte(`check="self"`)) {
		t.Errorf("picket_check_* series lack check=\"self\"")
	}
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	if err := p.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	if !strings.Contains(p.out.String(), "agent stopped") {
		t.Errorf("no 'agent stopped' log line after SIGTERM")
	}
}

const reloadConfig = `
node_name: e2e-1
data_dir: %s
log: {level: debug, format: json}
http: {listen: "127.0.0.1:%d", token: "${E2E_TOKEN}"}
cluster: {bind: "127.0.0.1:0", rpc: "127.0.0.1:0"}
collectors: {interval: 1s}
checks:
  - name: api-port
    type: tcp
    interval: 200ms
    timeout: 200ms
    tcp: {address: "127.0.0.1:%d"}
%s`

// TestReloadAndAuth runs an agent from a file with a token, then reloads it with SIGHUP:
// a good change applies (an unchanged check keeps its state), a bad file and a change that
// needs a restart are refused and the running config stays.
func TestReloadAndAuth(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	cfgPath := filepath.Join(dir, "picket.yaml")
	write := func(extra string, listenPort int) {
		t.Helper()
		body := fmt.Sprintf(reloadConfig, filepath.Join(dir, "data"), listenPort, port, extra)
		if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("", port)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := start(t, []string{"E2E_TOKEN=s3cret"}, "agent", "-c", cfgPath)
	auth := []string{"Authorization", "Bearer s3cret"}

	eventually(t, 20*time.Second, "api-port passing", func() error {
		cs, err := getChecks(ctx, base, auth...)
		if err != nil {
			return err
		}
		if c, ok := findCheck(cs, "api-port"); !ok || c.Status != "passing" {
			return fmt.Errorf("checks: %+v", cs)
		}
		return nil
	})
	for _, tc := range []struct {
		path   string
		header []string
		want   int
	}{
		{"/v1/agent", nil, 401},
		{"/v1/agent", []string{"Authorization", "Bearer wrong"}, 401},
		{"/v1/agent", auth, 200},
		{"/metrics", nil, 200},
		{"/healthz", nil, 200},
	} {
		code, body, err := get(ctx, base+tc.path, tc.header...)
		if err != nil || code != tc.want {
			t.Errorf("GET %s with %v: %d %s %v, want %d", tc.path, tc.header, code, body, err, tc.want)
		}
	}
	cs, _ := getChecks(ctx, base, auth...)
	before, _ := findCheck(cs, "api-port")

	// A good reload: one more check; api-port is unchanged and keeps its state.
	write(`  - name: second
    type: tcp
    interval: 200ms
    timeout: 200ms
    tcp: {address: "127.0.0.1:`+fmt.Sprint(port)+`"}
`, port)
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 20*time.Second, "second check passing after reload", func() error {
		cs, err := getChecks(ctx, base, auth...)
		if err != nil {
			return err
		}
		if c, ok := findCheck(cs, "second"); !ok || c.Status != "passing" {
			return fmt.Errorf("checks: %+v", cs)
		}
		return nil
	})
	cs, _ = getChecks(ctx, base, auth...)
	if after, _ := findCheck(cs, "api-port"); !after.Since.Equal(before.Since) || after.Status != "passing" {
		t.Errorf("api-port lost its state on reload: before %+v, after %+v", before, after)
	}

	// A bad file is refused; the agent keeps running with both checks.
	if err := os.WriteFile(cfgPath, []byte("checks:\n  - name: x\n    interval: soon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "invalid reload refused", func() error {
		if !strings.Contains(p.out.String(), "reload refused") {
			return fmt.Errorf("no 'reload refused' log line yet")
		}
		return nil
	})
	// A change that needs a restart is refused too.
	write("", freePort(t))
	p.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "restart-requiring reload refused", func() error {
		if !strings.Contains(p.out.String(), "http.listen") {
			return fmt.Errorf("no refusal naming http.listen yet")
		}
		return nil
	})
	cs, err := getChecks(ctx, base, auth...)
	if err != nil || len(cs) != 2 {
		t.Fatalf("after refused reloads want the 2 running checks, got %+v %v", cs, err)
	}
	if err := p.stop(t, syscall.SIGTERM, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestValidate runs `picket validate` on a file with an unknown key and a bad duration: it
// must exit non-zero and name both with their lines.
func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("node_name: a\nhttp:\n  listn: 127.0.0.1:7948\nchecks:\n  - name: x\n    type: tcp\n    interval: soon\n    tcp: {address: 127.0.0.1:1}\n"), 0o600)
	out, err := exec.Command(binary(t), "validate", bad).CombinedOutput()
	if err == nil {
		t.Fatalf("validate of a bad file exited 0:\n%s", out)
	}
	for _, want := range []string{"bad.yaml:3", "http.listn", "bad.yaml:7", "checks[0].interval", `"soon"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("node_name: a\ncluster: {bind: 127.0.0.1:7946}\n"), 0o600)
	if out, err := exec.Command(binary(t), "validate", good).CombinedOutput(); err != nil {
		t.Errorf("validate of a good file: %v\n%s", err, out)
	}
}

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests run the picket:dev image (make docker) as containers on a user-defined bridge
// network, reached from the host through the containers' addresses. Every container,
// network and anonymous volume a test creates is removed when it ends, failed or not; all
// carry the label picket-e2e so leftovers of a killed run can be found:
//
//	docker rm -f -v $(docker ps -aq -f label=picket-e2e); docker network prune -f --filter label=picket-e2e

// dockerLabel marks what the tests create.
const dockerLabel = "picket-e2e"

// dockerEnv is a docker CLI and the picket image it runs; prefix makes this test's names
// unique among concurrent and past runs.
type dockerEnv struct {
	docker string
	image  string
	prefix string
}

// needDocker returns a dockerEnv for the image PICKET_IMAGE (default picket:dev), skipping
// the test (or failing it when required()) when docker, its daemon or the image is missing.
func needDocker(t *testing.T) *dockerEnv {
	t.Helper()
	image := os.Getenv("PICKET_IMAGE")
	if image == "" {
		image = "picket:dev"
	}
	missing := func(what string) {
		t.Helper()
		if required() {
			t.Fatalf("%s is required (PICKET_E2E_REQUIRE/CI set)", what)
		}
		t.Skipf("%s; set PICKET_E2E_REQUIRE=1 to fail instead", what)
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		missing("docker not on PATH")
	}
	id := make([]byte, 4)
	rand.Read(id)
	d := &dockerEnv{docker: docker, image: image, prefix: "picket-e2e-" + hex.EncodeToString(id)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := d.run(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		missing(fmt.Sprintf("docker daemon not reachable (%v)", err))
	}
	if _, err := d.run(ctx, "image", "inspect", "--format", "{{.Id}}", image); err != nil {
		missing(fmt.Sprintf("image %s missing: run `make docker` (or set PICKET_IMAGE)", image))
	}
	return d
}

// run runs docker with args and returns its trimmed stdout; the error carries stderr.
func (d *dockerEnv) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.docker, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// cleanup runs docker with args at test end, logging (not failing on) an error.
func (d *dockerEnv) cleanup(t *testing.T, args ...string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := d.run(ctx, args...); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
}

// network creates a user-defined bridge network, removed at test end after the containers
// on it (cleanups run last-registered first, and containers are started after this).
func (d *dockerEnv) network(t *testing.T) string {
	t.Helper()
	name := d.prefix + "-net"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := d.run(ctx, "network", "create", "--driver", "bridge", "--label", dockerLabel, name); err != nil {
		t.Fatal(err)
	}
	d.cleanup(t, "network", "rm", name)
	return name
}

// container is one picket agent running in a container.
type container struct {
	name string // container name, also its host name and DNS name on the network
	ip   string // address on the test network
	base string // http://ip:7948
}

// containerConfigPath is where startContainer mounts the picket configuration.
const containerConfigPath = "/etc/picket/picket.yaml"

// startContainer runs `picket agent -c` with cfg in a container named d.prefix-name on
// network; runArgs go to `docker run` before the image (like --network-alias picket). The
// container and its anonymous data volume are removed at test end, its log shown when the
// test failed. It returns once the container has an address; it does not wait for picket.
func (d *dockerEnv) startContainer(t *testing.T, network, name, cfg string, runArgs ...string) *container {
	t.Helper()
	full := d.prefix + "-" + name
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "picket.yaml")
	// Readable by the image's non-root user; the folder stays private to the host's user.
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			if out, err := exec.CommandContext(ctx, d.docker, "logs", "--tail", "200", full).CombinedOutput(); err == nil {
				t.Logf("container %s log:\n%s", full, out)
			}
		}
		if _, err := d.run(ctx, "rm", "-f", "-v", full); err != nil {
			t.Logf("cleanup: %v", err)
		}
	})
	args := []string{"run", "-d", "--name", full, "--hostname", full, "--network", network,
		"--label", dockerLabel, "-v", cfgFile + ":" + containerConfigPath + ":ro"}
	args = append(args, runArgs...)
	args = append(args, d.image, "agent", "-c", containerConfigPath)
	if _, err := d.run(ctx, args...); err != nil {
		t.Fatal(err)
	}
	ip, err := d.run(ctx, "inspect", "--format", fmt.Sprintf(`{{(index .NetworkSettings.Networks %q).IPAddress}}`, network), full)
	if err != nil || ip == "" {
		t.Fatalf("address of %s on %s: %q %v", full, network, ip, err)
	}
	return &container{name: full, ip: ip, base: "http://" + ip + ":7948"}
}

// waitHealthy polls the container's /healthz until it answers 200, failing at once if the
// container stops.
func (d *dockerEnv) waitHealthy(t *testing.T, c *container, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout+10*time.Second)
	defer cancel()
	eventually(t, timeout, c.name+" /healthz", func() error {
		code, body, err := get(ctx, c.base+"/healthz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		if running, ierr := d.run(ctx, "inspect", "--format", "{{.State.Running}} exit={{.State.ExitCode}}", c.name); ierr == nil && !strings.HasPrefix(running, "true") {
			logs, _ := exec.CommandContext(ctx, d.docker, "logs", "--tail", "50", c.name).CombinedOutput()
			t.Fatalf("container %s stopped (%s):\n%s", c.name, running, logs)
		}
		if err == nil {
			err = fmt.Errorf("status %d %s", code, body)
		}
		return err
	})
}

// containerAgentConfig is one agent in a container: API and gossip on every address of the
// container (the host reaches it through the bridge), no gossip key.
const containerAgentConfig = `node_name: %s
data_dir: /var/lib/picket
log: {level: debug, format: json}
http: {listen: "0.0.0.0:7948"}
cluster:
  name: e2e
  bind: "0.0.0.0:7946"
  insecure: true
  profile: fast
collectors: {interval: 1s}
checks:
  - name: self
    type: http
    interval: 1s
    http: {url: "http://127.0.0.1:7948/healthz"}
`

// TestDockerAgent runs one agent container from the image and checks it from the host over
// the bridge network: /healthz, /v1/agent, that it runs as a non-root user, and that its data
// folder belongs to that user.
func TestDockerAgent(t *testing.T) {
	d := needDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	user, err := d.run(ctx, "image", "inspect", "--format", "{{.Config.User}}", d.image)
	if err != nil {
		t.Fatal(err)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Fatalf("image %s runs as user %q; want a numeric non-root uid (USER 65534:65534)", d.image, user)
	}

	nw := d.network(t)
	c := d.startContainer(t, nw, "n1", fmt.Sprintf(containerAgentConfig, "n1"))
	d.waitHealthy(t, c, 30*time.Second)

	code, body, err := get(ctx, c.base+"/v1/agent")
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /v1/agent: %d %s %v", code, body, err)
	}
	var agent struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	}
	if err := json.Unmarshal(body, &agent); err != nil {
		t.Fatalf("GET /v1/agent: %v: %s", err, body)
	}
	if agent.Name != "n1" || agent.Version == "" {
		t.Errorf("GET /v1/agent = %s; want name n1 and a version", body)
	}

	// The running process, seen from the host, has the image's uid.
	top, err := d.run(ctx, "top", c.name, "-o", "pid,uid,comm")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(top, "picket") {
		t.Errorf("docker top %s shows no picket process:\n%s", c.name, top)
	}
	for _, line := range strings.Split(top, "\n")[1:] {
		if f := strings.Fields(line); len(f) > 1 && f[1] != uid {
			t.Errorf("process runs as uid %s, want %s:\n%s", f[1], uid, top)
		}
	}

	// The data folder and everything picket wrote in it belong to that uid, which may write.
	owner, err := d.dataDirOwners(ctx, c.name, "/var/lib/picket")
	if err != nil {
		t.Fatal(err)
	}
	if len(owner) == 0 {
		t.Fatal("docker cp of /var/lib/picket gave no entries")
	}
	for path, h := range owner {
		if strconv.Itoa(h.Uid) != uid {
			t.Errorf("%s is owned by uid %d, want %s", path, h.Uid, uid)
		}
		if h.Typeflag == tar.TypeDir && h.Mode&0o200 == 0 {
			t.Errorf("%s mode %o: its owner cannot write", path, h.Mode)
		}
	}
}

// dataDirOwners copies dir out of the container (docker cp, as a tar stream) and returns the
// header of every entry by path.
func (d *dockerEnv) dataDirOwners(ctx context.Context, name, dir string) (map[string]*tar.Header, error) {
	cmd := exec.CommandContext(ctx, d.docker, "cp", name+":"+dir, "-")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("docker cp %s:%s: %w: %s", name, dir, err, stderr.String())
	}
	headers := map[string]*tar.Header{}
	tr := tar.NewReader(bytes.NewReader(out))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return headers, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read docker cp archive: %w", err)
		}
		headers[h.Name] = h
	}
}

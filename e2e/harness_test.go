// Package e2e runs the built picket binary as real processes, next to real peers
// (Prometheus' promtool, and later Prometheus, an OTel Collector and containers).
//
// PICKET_BIN names the binary (make e2e sets it); without it the tests build one.
// PICKET_E2E_REQUIRE=1 (or CI set) turns a missing peer into a failure instead of a skip.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var buildOnce struct {
	sync.Once
	path string
	err  error
}

// binary returns the picket binary to test, building it once when PICKET_BIN is unset.
func binary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PICKET_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "picket-e2e-bin")
		if err != nil {
			buildOnce.err = err
			return
		}
		buildOnce.path = filepath.Join(dir, "picket")
		cmd := exec.Command("go", "build", "-o", buildOnce.path, "..")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildOnce.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildOnce.err != nil {
		t.Fatal(buildOnce.err)
	}
	return buildOnce.path
}

// required reports whether missing peers must fail the test rather than skip it.
func required() bool {
	return os.Getenv("PICKET_E2E_REQUIRE") != "" || os.Getenv("CI") != ""
}

// needTool returns the path of a peer program, skipping (or failing when required) if absent.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if required() {
			t.Fatalf("%s is required (PICKET_E2E_REQUIRE/CI set) but not on PATH: apt-get install prometheus", name)
		}
		t.Skipf("%s not on PATH; install it (apt-get install prometheus) or set PICKET_E2E_REQUIRE=1 to fail instead", name)
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for a writer goroutine and test readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one running picket process.
type proc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// start runs picket with args and env additions; the process is killed at test end if still
// running, and its output is logged when the test fails.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start picket: %v", err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("picket %s output:\n%s", strings.Join(args, " "), out.String())
		}
	})
	return p
}

// waitStarted waits until the agent logs that it started, or fails with its output when it
// exits first or d passes.
func (p *proc) waitStarted(d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if strings.Contains(p.out.String(), "agent started") {
			return nil
		}
		select {
		case err := <-p.done:
			p.done <- err // keep it for stop and Cleanup
			return fmt.Errorf("exited (%v): %s", err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("no \"agent started\" within %s: %s", d, p.out.String())
}

// stop sends sig and waits up to d for the process to exit, returning its exit error.
func (p *proc) stop(t *testing.T, sig syscall.Signal, d time.Duration) error {
	t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err // keep it for Cleanup
		return err
	case <-time.After(d):
		t.Fatalf("picket did not exit within %s after %s", d, sig)
		return nil
	}
}

// eventually polls cond every 50 ms until it returns nil or d passes, then fails with the
// last error.
func eventually(t *testing.T, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not true within %s: %v", what, d, err)
}

// get fetches url and returns status and body.
func get(ctx context.Context, url string, header ...string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

package checks

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func execCheck(e config.ExecCheck) *config.Check {
	return &config.Check{Name: "script", Type: config.TypeExec, Exec: &e}
}

func sh(script string) []string { return []string{"sh", "-c", script} }

func TestExec(t *testing.T) {
	dir := t.TempDir()
	noexec := filepath.Join(dir, "plain.txt")
	if err := os.WriteFile(noexec, []byte("echo hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		check   config.ExecCheck
		status  Status
		reason  string
		output  string // exact, unless prefix is set
		isStart bool   // output only has to start with output
	}{
		{"ok", config.ExecCheck{Command: sh("echo '  all fine  '")}, Passing, ReasonNone, "all fine", false},
		{"no output", config.ExecCheck{Command: []string{"true"}}, Passing, ReasonNone, "exit code 0", false},
		{"warning", config.ExecCheck{Command: sh("echo disk 85% full; exit 1")}, Warning, ReasonStatus, "disk 85% full", false},
		{"critical", config.ExecCheck{Command: sh("echo disk 99% full; exit 2")}, Critical, ReasonStatus, "disk 99% full", false},
		{"unknown code", config.ExecCheck{Command: sh("echo no idea >&2; exit 3")}, Critical, ReasonStatus, "exit code 3: no idea", false},
		{"silent failure", config.ExecCheck{Command: []string{"false"}}, Warning, ReasonStatus, "exit code 1", false},
		{"combined output in order", config.ExecCheck{Command: sh("echo out; echo err >&2; echo out2")}, Passing, ReasonNone, "out\nerr\nout2", false},
		{"argv not a shell", config.ExecCheck{Command: []string{"echo", "$HOME", "a;b", "`id`"}}, Passing, ReasonNone, "$HOME a;b `id`", false},
		{"minimal env", config.ExecCheck{Command: sh(`echo "[$FOO][$HOME][$USER]"`), Env: map[string]string{"FOO": "bar"}}, Passing, ReasonNone, "[bar][][]", false},
		{"env PATH", config.ExecCheck{Command: sh("echo $PATH"), Env: map[string]string{"PATH": "/bin:/usr/bin"}}, Passing, ReasonNone, "/bin:/usr/bin", false},
		{"dir", config.ExecCheck{Command: []string{"pwd"}, Dir: dir}, Passing, ReasonNone, dir, false},
		{"capped", config.ExecCheck{Command: sh("head -c 10000 /dev/zero | tr '\\0' a")}, Passing, ReasonNone, strings.Repeat("a", maxExecOutput) + " ... (5904 more bytes cut)", false},
		{"killed by signal", config.ExecCheck{Command: sh("kill -9 $$")}, Critical, ReasonStatus, "killed by signal killed", false},
		{"missing binary", config.ExecCheck{Command: []string{"picket-no-such-plugin"}}, Critical, ReasonConfig, `command "picket-no-such-plugin" not found in PATH`, true},
		{"missing path", config.ExecCheck{Command: []string{"/nonexistent/check"}}, Critical, ReasonConfig, "command /nonexistent/check: ", true},
		{"not executable", config.ExecCheck{Command: []string{noexec}}, Critical, ReasonConfig, "command " + noexec, true},
		{"a directory", config.ExecCheck{Command: []string{dir}}, Critical, ReasonConfig, "command " + dir, true},
		{"missing dir", config.ExecCheck{Command: []string{"true"}, Dir: "/nonexistent"}, Critical, ReasonConfig, "start true: ", true},
		{"empty command", config.ExecCheck{}, Critical, ReasonConfig, "command is empty", true},
	}
	probe := Probers()[config.TypeExec]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, execCheck(tt.check), 5*time.Second)
			expect(t, r, tt.status, tt.reason)
			if tt.isStart && !strings.HasPrefix(r.Output, tt.output) || !tt.isStart && r.Output != tt.output {
				t.Errorf("output %q, want %q", r.Output, tt.output)
			}
		})
	}
}

// TestExecTimeoutKillsGroup proves that a timed-out command and its children are killed.
func TestExecTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	c := execCheck(config.ExecCheck{Command: sh("sleep 30 & echo $! > " + pidFile + "; echo started; wait")})
	start := time.Now()
	r := runProbe(t, c, 500*time.Millisecond)
	expect(t, r, Critical, ReasonTimeout, "timeout after 500ms, process group killed; output: started")
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("timed-out exec took %v", took)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child sleep (pid %d) still runs 5s after the timeout", pid)
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// processAlive reports whether pid runs; a zombie waiting for its reaper counts as dead.
func processAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "123 (sleep) Z ...".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func TestExecEnv(t *testing.T) {
	t.Setenv("PATH", "/agent/bin")
	t.Setenv("SECRET_TOKEN", "x")
	got := strings.Join(execEnv(map[string]string{"B": "2", "A": "1"}), " ")
	if want := "A=1 B=2 PATH=/agent/bin"; got != want {
		t.Errorf("execEnv = %q, want %q", got, want)
	}
}

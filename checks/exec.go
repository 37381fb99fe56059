package checks

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/picket-dev/picket/internal/config"
)

const (
	maxExecOutput = 4 << 10 // bytes of combined stdout and stderr kept
	// execWaitDelay bounds the wait for output pipes after the process exited or was
	// killed, in case something outside its process group holds them open.
	execWaitDelay = 250 * time.Millisecond
	defaultPath   = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// probeExec runs the command in a process group of its own, with a minimal environment
// (PATH plus the check's env), and judges its exit code as a Nagios plugin's. When the
// context ends, the whole process group is killed.
func probeExec(ctx context.Context, c *config.Check) Result {
	start := time.Now()
	e := c.Exec
	if e == nil {
		return missingBlock(config.TypeExec, `command: ["/usr/lib/nagios/plugins/check_disk", "-w", "10%"]`)
	}
	if len(e.Command) == 0 || e.Command[0] == "" {
		return failf(ReasonConfig, "command is empty (give argv as a list, like [\"/bin/check\", \"-v\"])")
	}
	env := execEnv(e.Env)
	path, err := lookPath(e.Command[0], env)
	if err != nil {
		return failf(ReasonConfig, "%v", err)
	}

	out := &cappedBuffer{max: maxExecOutput}
	cmd := exec.CommandContext(ctx, path, e.Command[1:]...)
	cmd.Args[0] = e.Command[0]
	cmd.Env = env
	cmd.Dir = e.Dir
	cmd.Stdout, cmd.Stderr = out, out // one pipe, so the output keeps its order
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = execWaitDelay
	if err := cmd.Start(); err != nil {
		return failf(ReasonConfig, "start %s: %v", e.Command[0], err)
	}
	err = cmd.Wait()
	_ = killGroup(cmd.Process.Pid) // leave nothing of the check running

	text := out.text()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		dl, _ := ctx.Deadline()
		r := failf(ReasonTimeout, "%s, process group killed", timeoutOutput(start, dl))
		if text != "" {
			r.Output += "; output: " + text
		}
		return r
	}
	if ctx.Err() != nil {
		return failf(ReasonCanceled, "canceled: the agent stopped the run")
	}
	code := cmd.ProcessState.ExitCode()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) && !errors.Is(err, exec.ErrWaitDelay) {
		return failf(ReasonProtocol, "wait for %s: %v", e.Command[0], err)
	}
	r := Result{Output: text}
	switch code {
	case 0:
		r.Status = Passing
	case 1:
		r.Status, r.Reason = Warning, ReasonStatus
	case 2:
		r.Status, r.Reason = Critical, ReasonStatus
	default:
		r.Status, r.Reason = Critical, ReasonStatus
		what := "exit code " + strconv.Itoa(code)
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			what = "killed by signal " + ws.Signal().String()
		}
		if text != "" {
			what += ": " + text
		}
		r.Output = what
	}
	if r.Output == "" {
		r.Output = "exit code " + strconv.Itoa(code)
	}
	return r
}

// killGroup kills the process group led by pid. A group that is already gone is no error.
func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// execEnv returns the minimal environment of a command: PATH (the agent's, or a default)
// with the check's env on top, sorted.
func execEnv(extra map[string]string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	env := make([]string, 0, len(extra)+1)
	if _, ok := extra["PATH"]; !ok {
		env = append(env, "PATH="+path)
	}
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// lookPath finds an executable like a shell would, but in the PATH of env.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("command %s: %w", name, err)
		}
		return name, nil
	}
	var path string
	for _, kv := range env {
		if p, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = p
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue // an empty entry would mean the agent's working directory
		}
		if p := filepath.Join(dir, name); executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %q not found in PATH %s (give an absolute path or set env PATH)", name, path)
}

// executable reports why the file at path cannot be run, or nil.
func executable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return err
	case fi.IsDir():
		return fmt.Errorf("%s is a directory", path)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("%s is not executable: %w", path, fs.ErrPermission)
	}
	return nil
}

// cappedBuffer keeps the first max bytes written to it and counts the rest. Only the
// single goroutine of os/exec that copies the output pipe writes to it.
type cappedBuffer struct {
	max     int
	buf     []byte
	dropped int
}

// Write keeps what fits and always reports the whole of p as written.
func (b *cappedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), b.max-len(b.buf))
	b.buf = append(b.buf, p[:n]...)
	b.dropped += len(p) - n
	return len(p), nil
}

// text returns the kept output, trimmed, cut at a rune boundary, with a note of the cut.
func (b *cappedBuffer) text() string {
	kept := b.buf
	if b.dropped > 0 { // drop a rune cut in half by the cap
		for i := len(kept) - 1; i >= 0 && i >= len(kept)-utf8.UTFMax; i-- {
			if utf8.RuneStart(kept[i]) {
				if !utf8.FullRune(kept[i:]) {
					kept = kept[:i]
				}
				break
			}
		}
	}
	s := strings.TrimSpace(strings.ToValidUTF8(string(kept), "\uFFFD"))
	if b.dropped > 0 {
		s += fmt.Sprintf(" ... (%d more bytes cut)", b.dropped)
	}
	return s
}

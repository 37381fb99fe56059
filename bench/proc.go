package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which is 100 on every
// Linux architecture Go supports (the kernel scales its internal HZ to it).
const userHZ = 100

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 5 * time.Second

// Proc is a program the bench started, in its own process group, with stdout and stderr in
// a log file. Its methods are safe for concurrent use; Stop is idempotent.
type Proc struct {
	Name    string
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has been reaped
	err  error         // Wait's result, set before done is closed

	stopOnce sync.Once
}

// Procs tracks every process started through it so that a failing workload still stops
// them all. Safe for concurrent use.
type Procs struct {
	Dir string // where log files go

	mu    sync.Mutex
	procs []*Proc
}

// Start runs argv[0] with the remaining arguments, logging to Dir/name.log. The process is
// killed (SIGKILL) if the bench process dies first.
func (ps *Procs) Start(name string, argv ...string) (*Proc, error) {
	logPath := filepath.Join(ps.Dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer f.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Dir = ps.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s (%s): %w", name, argv[0], err)
	}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { // owned by p: Stop waits for done
		p.err = cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return p, nil
}

// StopAll stops every process started through ps that is still running.
func (ps *Procs) StopAll() {
	ps.mu.Lock()
	procs := ps.procs
	ps.procs = nil
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(func() { _ = p.Stop() })
	}
	wg.Wait()
}

// PID is the process id.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM to the process group, then SIGKILL after stopGrace, and waits until
// the process is reaped. It returns nil when the process had to be (or already was) stopped.
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		pgid := -p.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			<-p.done
		}
		_ = syscall.Kill(pgid, syscall.SIGKILL) // any child left in the group
	})
	return nil
}

// Kill sends SIGKILL to the process group at once (as kill -9 would) and waits until the
// process is reaped. A Stop or Kill after it does nothing.
func (p *Proc) Kill() {
	p.stopOnce.Do(func() {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
}

// Tail returns the last n lines of the process log, for error messages.
func (p *Proc) Tail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CPU returns the CPU time (user + system) the process has used, from /proc/PID/stat.
func (p *Proc) CPU() (time.Duration, error) { return ProcCPU(p.PID()) }

// RSS returns the resident set size in bytes, from /proc/PID/status.
func (p *Proc) RSS() (int64, error) { return ProcRSS(p.PID()) }

// ProcCPU returns utime + stime of process pid (all its threads, dead ones included).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of pid %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) of a /proc/PID/stat line. The
// command name (field 2) is in parentheses and may hold spaces, so fields are counted from
// the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("parse /proc/PID/stat: no ')' after the command name")
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc/PID/stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/PID/stat utime/stime %q: %w", s, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ProcRSS returns VmRSS of process pid in bytes.
func ProcRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of pid %d: %w", pid, err)
	}
	return parseStatusRSS(b)
}

func parseStatusRSS(b []byte) (int64, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("parse /proc/PID/status: unexpected VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/PID/status VmRSS %q: %w", f[0], err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("parse /proc/PID/status: no VmRSS line (is the process a zombie?)")
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another process may
// take it before the caller binds it; the bench accepts that small race.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreePorts returns n distinct free ports on 127.0.0.1, each free for TCP and UDP (gossip
// needs both).
func FreePorts(n int) ([]int, error) {
	var out []int
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for len(out) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // the UDP port is taken; try another
		}
		_ = u.Close()
		out = append(out, port)
	}
	return out, nil
}

// WaitHTTP polls url until it answers 200, p exits, or ctx ends.
func WaitHTTP(ctx context.Context, p *Proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	for {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before serving %s; its log (%s) ends:\n%s", p.Name, url, p.LogPath, p.Tail(15))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			name := "the server"
			if p != nil {
				name = p.Name
				return fmt.Errorf("%s did not serve %s within %s; its log (%s) ends:\n%s", name, url, timeout, p.LogPath, p.Tail(15))
			}
			return fmt.Errorf("%s did not serve %s within %s", name, url, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

package bench

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
)

// goBench is one Go benchmark profiled to explain a miss.
type goBench struct {
	pkg  string // ./collectors
	name string // BenchmarkCollect
	what string
}

// Profile runs the collectors' BenchmarkCollect and the exporters' BenchmarkScrape with
// -cpuprofile and returns their ns/op and the top of each profile, to say which component
// dominates picket's cost per scrape (collection on its schedule, or serving /metrics).
func (e *Env) Profile(ctx context.Context) (string, error) {
	if e.Module == "" {
		return "", fmt.Errorf("no module root: cannot run the Go benchmarks")
	}
	var out strings.Builder
	for _, b := range []goBench{
		{"./collectors", "BenchmarkCollect", "one collection of every collector (runs every collectors.interval)"},
		{"./exporters", "BenchmarkScrape", "one GET /metrics with every collector registered (reads snapshots)"},
	} {
		e.logf("profile: go test -bench '^%s$' %s", b.name, b.pkg)
		dir, err := e.runDir("profile")
		if err != nil {
			return "", err
		}
		prof := filepath.Join(dir, "cpu.prof")
		bin := filepath.Join(dir, "pkg.test")
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+b.name+"$", "-benchtime", "2s", "-benchmem",
			"-cpuprofile", prof, "-o", bin, b.pkg)
		cmd.Dir = e.Module
		res, err := cmd.CombinedOutput()
		if err != nil {
			return out.String(), fmt.Errorf("go test -bench %s %s: %w\n%s", b.name, b.pkg, err, res)
		}
		fmt.Fprintf(&out, "%s %s — %s:\n", b.pkg, b.name, b.what)
		for line := range strings.SplitSeq(string(res), "\n") {
			if strings.HasPrefix(line, b.name) {
				fmt.Fprintf(&out, "    %s\n", strings.Join(strings.Fields(line), " "))
			}
		}
		top, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-cum", "-nodecount=150", bin, prof).Output()
		if err != nil {
			return out.String(), fmt.Errorf("go tool pprof %s: %w", prof, err)
		}
		out.WriteString(componentLines(string(top), b.name, 14))
	}
	return out.String(), nil
}

// componentLines keeps, from `pprof -top -cum` output, the total line and the first n
// frames of components (picket, its libraries, the GC), skipping the benchmark's own frames.
func componentLines(top, bench string, n int) string {
	var out strings.Builder
	kept := 0
	for line := range strings.SplitSeq(top, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Duration:"):
			fmt.Fprintf(&out, "    %s\n", line)
			out.WriteString("      flat  flat%   sum%        cum   cum%  (cumulative CPU of each component)\n")
		case len(f) >= 6 && kept < n && isComponent(f[len(f)-1]) && !strings.Contains(line, "."+bench):
			fmt.Fprintf(&out, "    %s\n", line)
			kept++
		}
	}
	return out.String()
}

func isComponent(fn string) bool {
	if fn == "runtime.gcBgMarkWorker" || fn == "runtime.mallocgc" {
		return true
	}
	for _, p := range []string{"github.com/", "go.opentelemetry.io/", "compress/"} {
		if strings.HasPrefix(fn, p) {
			return true
		}
	}
	return false
}

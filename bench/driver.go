// Package bench measures picket against its peers in one run, as /work/shared/BENCHMARKS.md
// asks: node_exporter (P1–P3), blackbox_exporter (P4, P5), a bare hashicorp/raft + raft-wal
// cluster (P7, P8), failure detection (P9), the OTel SDK's default log pipeline (P11), and
// absolute targets (P6, P10). Every comparison runs both sides
// alternately on the same workload in the same run; the results are one table of medians
// with their spread, printed and written as Markdown.
//
// The driver is bench/cmd/picket-bench; the local service every check goes to is
// bench/cmd/target, a process of its own so that its CPU counts for neither side.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Workload names, in the order they run.
const (
	WorkScrape     = "scrape"     // P1, P2
	WorkIdle       = "idle"       // P3
	WorkProbes     = "probes"     // P4, P5
	WorkSchedule   = "schedule"   // P6
	WorkLogs       = "logs"       // P7, P8
	WorkPlacement  = "placement"  // P9
	WorkOTLP       = "otlp"       // P11
	WorkMembership = "membership" // P10
)

// WorkloadNames lists every workload in run order.
func WorkloadNames() []string {
	return []string{WorkScrape, WorkIdle, WorkProbes, WorkSchedule, WorkLogs, WorkPlacement, WorkOTLP, WorkMembership}
}

// Options configure Run.
type Options struct {
	Module    string   // module root (holds go.mod); the picket and target binaries are built from it
	PicketBin string   // picket binary to use; "" builds one from Module
	Out       string   // Markdown results file; "" writes none
	Only      []string // workloads to run; empty runs all
	Profile   string   // "auto" (profile what misses: P1/P2, P7), "always" or "never"
	Plan      Plan
	Stdout    io.Writer // table and progress
	// PicketLog is picket's side of P7/P8 (see Env.PicketLog); nil uses
	// NewPicketLogFactory with the picket binary measured.
	PicketLog LogTargetFactory
}

// Run builds what it needs, runs the workloads, prints the table and writes Out. Every
// process it starts is stopped before it returns, also on failure or when ctx ends. It
// returns an error when a workload failed (the table still shows the others).
func Run(ctx context.Context, o Options) error {
	started := time.Now()
	for _, w := range o.Only {
		if !slices.Contains(WorkloadNames(), w) {
			return fmt.Errorf("unknown workload %q: use some of %s", w, strings.Join(WorkloadNames(), ","))
		}
	}
	dir, err := os.MkdirTemp("", "picket-bench-")
	if err != nil {
		return fmt.Errorf("scratch folder: %w", err)
	}
	defer os.RemoveAll(dir)
	procs := &Procs{Dir: dir}
	defer procs.StopAll()

	e := &Env{Module: o.Module, Dir: dir, Procs: procs, Log: o.Stdout, Plan: o.Plan, PicketLog: o.PicketLog, ProfileMode: o.Profile}
	if e.Picket, err = buildPicket(ctx, e, o.PicketBin); err != nil {
		return err
	}
	if e.PicketLog == nil {
		e.PicketLog = NewPicketLogFactory(e.Picket, procs, PicketLogOptions{})
	}
	if e.Target, err = goBuild(ctx, e, "target", "./bench/cmd/target"); err != nil {
		return err
	}
	var missing []string
	e.NodeExporter, _ = exec.LookPath(NodeExporterProgram)
	e.Blackbox, _ = exec.LookPath(BlackboxProgram)
	for prog, path := range map[string]string{NodeExporterProgram: e.NodeExporter, BlackboxProgram: e.Blackbox} {
		if path == "" {
			missing = append(missing, prog)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		fmt.Fprintf(o.Stdout, "MISSING PEERS: %s not on PATH; their comparisons will fail. Install them with:\n"+
			"  sudo DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus-node-exporter prometheus-blackbox-exporter\n",
			strings.Join(missing, ", "))
	}

	work := map[string]struct {
		ids string
		run func(context.Context) ([]Row, error)
	}{
		WorkScrape:     {"P1/P2", e.Scrape},
		WorkIdle:       {"P3", e.Idle},
		WorkProbes:     {"P4/P5", e.Probes},
		WorkSchedule:   {"P6", e.Schedule},
		WorkLogs:       {"P7/P8", e.Logs},
		WorkPlacement:  {"P9", e.Placement},
		WorkOTLP:       {"P11", e.OTLP},
		WorkMembership: {"P10", e.Membership},
	}
	var rows []Row
	var failed []string
	for _, name := range WorkloadNames() {
		if len(o.Only) > 0 && !slices.Contains(o.Only, name) {
			continue
		}
		w := work[name]
		r, err := w.run(ctx)
		procs.StopAll() // nothing of one workload runs into the next
		if err != nil {
			e.logf("%s (%s) FAILED: %v", name, w.ids, err)
			failed = append(failed, name)
			rows = append(rows, Row{ID: w.ids, Metric: name + " workload", Verdict: Failed, Note: oneLine(err.Error())})
			if ctx.Err() != nil {
				break
			}
			continue
		}
		rows = append(rows, r...)
	}

	if o.Profile == "always" || o.Profile == "auto" && misses(rows, "P1", "P2") && ctx.Err() == nil {
		d, err := e.Profile(ctx)
		if err != nil {
			d += "profile failed: " + oneLine(err.Error()) + "\n"
		}
		e.diagnoses = append([]Diagnosis{{Title: "Where picket's scrape cost goes",
			Intro: "`go test -cpuprofile` of the collectors and exporters benchmarks:", Body: d}}, e.diagnoses...)
	}

	fmt.Fprintln(o.Stdout)
	if err := WriteText(o.Stdout, rows); err != nil {
		return err
	}
	for _, d := range e.diagnoses {
		fmt.Fprintf(o.Stdout, "\n%s (%s)\n%s", d.Title, strings.TrimSuffix(d.Intro, ":"), d.Body)
	}
	elapsed := time.Since(started).Round(time.Second)
	fmt.Fprintf(o.Stdout, "\nbench took %s\n", elapsed)
	if o.Out != "" {
		if err := writeResults(o.Out, e, rows, e.diagnoses, elapsed); err != nil {
			return err
		}
		fmt.Fprintf(o.Stdout, "wrote %s\n", o.Out)
	}
	if len(failed) > 0 {
		return fmt.Errorf("workloads failed: %s", strings.Join(failed, ", "))
	}
	return ctx.Err()
}

// misses reports whether a row with one of ids missed its target.
func misses(rows []Row, ids ...string) bool {
	for _, r := range rows {
		if r.Verdict == Miss && slices.Contains(ids, r.ID) {
			return true
		}
	}
	return false
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// buildPicket returns bin when set, else builds picket from the module root.
func buildPicket(ctx context.Context, e *Env, bin string) (string, error) {
	if bin != "" {
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("picket binary (PICKET_BIN or -picket): %w", err)
		}
		return bin, nil
	}
	return goBuild(ctx, e, "picket", ".")
}

// goBuild builds a static binary of pkg (relative to the module root) into the scratch folder.
func goBuild(ctx context.Context, e *Env, name, pkg string) (string, error) {
	if e.Module == "" {
		return "", errors.New("no module root to build from: run from inside the picket module, or set PICKET_BIN")
	}
	out := filepath.Join(e.Dir, "bin", name)
	e.logf("go build -o %s %s", out, pkg)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = e.Module
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if res, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s in %s: %w\n%s", pkg, e.Module, err, res)
	}
	return out, nil
}

// writeResults writes the Markdown report: when, where, what, the table and the diagnoses.
func writeResults(path string, e *Env, rows []Row, diagnoses []Diagnosis, elapsed time.Duration) error {
	var b strings.Builder
	b.WriteString("# picket benchmark results\n\n")
	b.WriteString("Written by `make bench` (bench/cmd/picket-bench). Every ratio is picket's median over the baseline's, " +
		"both measured alternately in this run; the parentheses hold the range over the runs. Targets: BENCHMARKS.md.\n\n")
	fmt.Fprintf(&b, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- machine: %d CPUs (nproc), %s, Linux %s, load average at the end %s\n",
		runtime.NumCPU(), cpuModel(), readTrim("/proc/sys/kernel/osrelease"), loadAvg())
	fmt.Fprintf(&b, "- picket: %s; %s\n", gitRevision(e.Module), runtime.Version())
	fmt.Fprintf(&b, "- peers: %s; %s\n", peerVersion(e.NodeExporter), peerVersion(e.Blackbox))
	fmt.Fprintf(&b, "- plan: %d alternating runs per comparison; the whole bench took %s\n\n", e.Plan.Repeats, elapsed)
	if err := WriteMarkdown(&b, rows); err != nil {
		return err
	}
	for _, d := range diagnoses {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n```\n%s```\n", d.Title, d.Intro, d.Body)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}

func cpuModel() string {
	for line := range strings.SplitSeq(readTrim("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func gitRevision(module string) string {
	if module == "" {
		return "unknown revision"
	}
	out, err := exec.Command("git", "-C", module, "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown revision"
	}
	return "git " + strings.TrimSpace(string(out))
}

func peerVersion(path string) string {
	if path == "" {
		return "missing"
	}
	out, _ := exec.Command(path, "--version").CombinedOutput()
	line, _, _ := strings.Cut(string(out), "\n")
	if line == "" {
		return filepath.Base(path)
	}
	return line
}

package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Peer program names, looked up on PATH (Debian packages of the same names).
const (
	NodeExporterProgram = "prometheus-node-exporter"
	BlackboxProgram     = "prometheus-blackbox-exporter"
)

// Plan sets how long and how often each workload runs. DefaultPlan fits the whole run in
// about nine minutes on a 2-core machine.
type Plan struct {
	Repeats int // alternating runs of picket and its peer per comparison

	ScrapeRun   time.Duration // P1/P2: scraping time per run
	ScrapeEvery time.Duration // P1/P2: scrape period, also picket's collectors.interval

	IdleRun         time.Duration // P3: measured idle time (both processes at once)
	IdleScrapeEvery time.Duration // P3: one scrape per this, also picket's collectors.interval

	ProbeRun    time.Duration // P4/P5: measured time per run
	ProbeRate   int           // P4/P5: probes per second asked of both sides
	ProbeChecks int           // P4/P5: picket checks sharing ProbeRate

	SchedRun      time.Duration // P6: measured time
	SchedChecks   int           // P6: checks
	SchedInterval time.Duration // P6: their interval
	SchedSlowPct  int           // P6: percent of checks whose target times out

	RaftRun       time.Duration // P7: ingestion time per run
	RaftFailovers int           // P8: failovers per timing profile

	RehomeRuns    int // P9: kill-and-re-home runs, fast profile (each a fresh 3-agent cluster)
	RehomeRunsLAN int // P9: the same with the lan profile

	OTLPBurst int // P11: records posted at once

	Agents         int // P10: in-process agents
	MembershipRuns int // P10: runs (each a fresh cluster of Agents)
}

// DefaultPlan is the plan of `make bench`.
func DefaultPlan() Plan {
	return Plan{
		Repeats:         3,
		ScrapeRun:       30 * time.Second,
		ScrapeEvery:     500 * time.Millisecond,
		IdleRun:         60 * time.Second,
		IdleScrapeEvery: 15 * time.Second,
		ProbeRun:        8 * time.Second,
		ProbeRate:       500,
		ProbeChecks:     200,
		SchedRun:        60 * time.Second,
		SchedChecks:     200,
		SchedInterval:   12 * time.Second,
		SchedSlowPct:    5,
		RaftRun:         5 * time.Second,
		RaftFailovers:   5,
		RehomeRuns:      4,
		RehomeRunsLAN:   2,
		OTLPBurst:       50000,
		Agents:          50,
		MembershipRuns:  5,
	}
}

// QuickPlan is a short smoke run (about two minutes) whose figures are too noisy to judge by.
func QuickPlan() Plan {
	p := DefaultPlan()
	p.Repeats = 1
	p.ScrapeRun = 5 * time.Second
	p.IdleRun = 15 * time.Second
	p.IdleScrapeEvery = 5 * time.Second
	p.ProbeRun = 3 * time.Second
	p.SchedRun = 15 * time.Second
	p.SchedInterval = 3 * time.Second
	p.RaftRun = 2 * time.Second
	p.RaftFailovers = 1
	p.MembershipRuns = 1
	p.RehomeRuns = 1
	p.RehomeRunsLAN = 0
	p.OTLPBurst = 10000
	return p
}

// Env is what the workloads share: the binaries, a scratch folder and the processes
// started. Workloads run one at a time.
type Env struct {
	Picket       string // picket binary
	Target       string // target binary (bench/cmd/target)
	NodeExporter string // path of prometheus-node-exporter; "" when it is not installed
	Blackbox     string // path of prometheus-blackbox-exporter; "" when it is not installed
	Module       string // module root, for the go test profiles; "" skips them
	Dir          string // scratch folder, removed by the caller
	Procs        *Procs // every process started, stopped by the caller even on failure
	Log          io.Writer
	Plan         Plan

	// PicketLog starts picket's side of P7/P8 (a 3-voter picket cluster ingesting through
	// its cluster log). Nil leaves those rows "pending".
	PicketLog LogTargetFactory
	// ProfileMode is Options.Profile: "auto" profiles what misses, "always", or "never".
	ProfileMode string

	diagnoses []Diagnosis // appended by workloads, printed after the table
}

// Diagnosis is a section after the results table saying where picket's time goes.
type Diagnosis struct {
	Title string // heading
	Intro string // one line on how it was measured
	Body  string // preformatted
}

func (e *Env) logf(format string, args ...any) {
	fmt.Fprintf(e.Log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// runDir makes a fresh folder under Dir.
func (e *Env) runDir(name string) (string, error) {
	d, err := os.MkdirTemp(e.Dir, name+"-")
	if err != nil {
		return "", fmt.Errorf("scratch folder for %s: %w", name, err)
	}
	return d, nil
}

// sameCollectorsDisabled returns the picket collectors to turn off so that the rest match
// nodeExporterFlags: CPU, memory, filesystem, disk, network, load. (node_exporter's meminfo
// carries the swap lines; picket's memory collector does not.)
func sameCollectorsDisabled() []string { return []string{"swap", "uptime"} }

// nodeExporterFlags reduce node_exporter to picket's collector set.
func nodeExporterFlags() []string {
	return []string{
		"--collector.disable-defaults", "--collector.cpu", "--collector.meminfo", "--collector.filesystem",
		"--collector.diskstats", "--collector.netdev", "--collector.loadavg",
	}
}

// picketSetup is one picket agent of a workload.
type picketSetup struct {
	CollectorsInterval time.Duration
	CollectorsDisabled []string // "all" for every collector
	Checks             string   // YAML list items under checks:, indented by two spaces
}

// startPicket writes a config for s and starts `picket agent`; it returns the process and
// the HTTP API address once /healthz answers.
func (e *Env) startPicket(ctx context.Context, name string, s picketSetup) (*Proc, string, error) {
	dir, err := e.runDir(name)
	if err != nil {
		return nil, "", err
	}
	ports, err := FreePorts(3)
	if err != nil {
		return nil, "", err
	}
	disabled := s.CollectorsDisabled
	if len(disabled) == 1 && disabled[0] == "all" {
		disabled = []string{"cpu", "load", "memory", "swap", "filesystem", "disk", "network", "uptime"}
	}
	httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[0])
	var b strings.Builder
	fmt.Fprintf(&b, "node_name: %s\n", name)
	fmt.Fprintf(&b, "data_dir: %s\n", filepath.Join(dir, "data"))
	b.WriteString("log: {level: warn, format: text}\n")
	fmt.Fprintf(&b, "http: {listen: %q}\n", httpAddr)
	b.WriteString("cluster:\n  name: bench\n")
	fmt.Fprintf(&b, "  bind: 127.0.0.1:%d\n  rpc: 127.0.0.1:%d\n", ports[1], ports[2])
	b.WriteString("  raft: {voters: 1, bootstrap_expect: 1}\n")
	fmt.Fprintf(&b, "collectors:\n  interval: %s\n  disabled: [%s]\n", s.CollectorsInterval, strings.Join(disabled, ", "))
	b.WriteString("exporters:\n  prometheus: {enabled: true}\n")
	if s.Checks != "" {
		b.WriteString("checks:\n" + s.Checks)
	}
	cfg := filepath.Join(dir, "picket.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o644); err != nil {
		return nil, "", fmt.Errorf("write %s: %w", cfg, err)
	}
	p, err := e.Procs.Start(name, e.Picket, "agent", "-c", cfg)
	if err != nil {
		return nil, "", err
	}
	if err := WaitHTTP(ctx, p, "http://"+httpAddr+"/healthz", 20*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", fmt.Errorf("picket (config %s): %w", cfg, err)
	}
	return p, httpAddr, nil
}

// startNodeExporter starts node_exporter with picket's collector set.
func (e *Env) startNodeExporter(ctx context.Context, name string) (*Proc, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	args := append([]string{e.NodeExporter, "--web.listen-address=" + addr}, nodeExporterFlags()...)
	p, err := e.Procs.Start(name, args...)
	if err != nil {
		return nil, "", err
	}
	if err := WaitHTTP(ctx, p, "http://"+addr+"/metrics", 10*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", err
	}
	return p, addr, nil
}

// blackboxConfig has the two modules the bench drives.
const blackboxConfig = `modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
`

// startBlackbox starts blackbox_exporter with blackboxConfig.
func (e *Env) startBlackbox(ctx context.Context, name string) (*Proc, string, error) {
	dir, err := e.runDir(name)
	if err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "blackbox.yml")
	if err := os.WriteFile(cfg, []byte(blackboxConfig), 0o644); err != nil {
		return nil, "", fmt.Errorf("write %s: %w", cfg, err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	p, err := e.Procs.Start(name, e.Blackbox, "--config.file="+cfg, "--web.listen-address="+addr)
	if err != nil {
		return nil, "", err
	}
	if err := WaitHTTP(ctx, p, "http://"+addr+"/-/healthy", 10*time.Second); err != nil {
		_ = p.Stop()
		return nil, "", err
	}
	return p, addr, nil
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package config

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Default values that other packages may need to show or compare against.
const (
	DefaultHTTPListen  = "127.0.0.1:7948"
	DefaultClusterName = "picket"
	DefaultBind        = "0.0.0.0:7946"
	DefaultRPCPort     = 7947
	DefaultMDNSService = "_picket._tcp"

	// DefaultCheckTimeout is a check's timeout when neither timeout nor a shorter
	// interval is set.
	DefaultCheckTimeout = 10 * time.Second
)

// Host metric collector names, as used in collectors.disabled.
const (
	CollectorCPU        = "cpu"
	CollectorLoad       = "load"
	CollectorMemory     = "memory"
	CollectorSwap       = "swap"
	CollectorFilesystem = "filesystem"
	CollectorDisk       = "disk"
	CollectorNetwork    = "network"
	CollectorUptime     = "uptime"
)

// CollectorNames returns every host metric collector name, in a fixed order. The result
// is a new slice on each call.
func CollectorNames() []string {
	return []string{
		CollectorCPU, CollectorLoad, CollectorMemory, CollectorSwap,
		CollectorFilesystem, CollectorDisk, CollectorNetwork, CollectorUptime,
	}
}

// CheckTypes returns every check type, in a fixed order. The result is a new slice on
// each call.
func CheckTypes() []string {
	return []string{TypeHTTP, TypeTCP, TypeDNS, TypeTLS, TypeGRPC, TypeExec}
}

// Default returns a configuration holding every default; Parse decodes a file onto it.
// node_name is the host name and data_dir is DefaultDataDir(). It does not validate on
// its own: gossip on 0.0.0.0:7946 needs cluster.key (or cluster.insecure).
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		NodeName: host,
		DataDir:  DefaultDataDir(),
		Log:      Log{Level: "info", Format: "text"},
		HTTP:     HTTP{Listen: DefaultHTTPListen},
		Cluster: Cluster{
			Name:    DefaultClusterName,
			Bind:    DefaultBind,
			Profile: "lan",
			Server:  true,
			Raft:    Raft{Voters: 3},
			Discovery: Discovery{
				DNS:  DNSDiscovery{Type: "A", Port: 7946, Interval: Duration(10 * time.Second)},
				MDNS: MDNSDiscovery{Service: DefaultMDNSService},
			},
			RetryJoinInterval: Duration(5 * time.Second),
		},
		Collectors: Collectors{Interval: Duration(15 * time.Second), HostRoot: "/"},
		Exporters: Exporters{
			Prometheus: Prometheus{Enabled: true},
			OTLP: OTLP{
				Protocol: "grpc",
				Interval: Duration(30 * time.Second),
				Timeout:  Duration(10 * time.Second),
				Logs:     true,
			},
		},
		Logs: Logs{
			Retention: Retention{MaxRecords: 1_000_000, MaxBytes: 256 << 20, MaxAge: Duration(168 * time.Hour)},
			Spool:     Spool{MaxBytes: 64 << 20},
		},
	}
}

// DefaultDataDir is the data_dir used when the config leaves it empty: /var/lib/picket
// when running as root and that folder (or /var/lib, to create it in) is writable; else
// $XDG_STATE_HOME/picket; else ~/.local/state/picket; else picket-UID in the temp folder.
// It reads the process environment, not the config's lookup function.
func DefaultDataDir() string {
	const system = "/var/lib/picket"
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(system); err == nil {
			if fi.IsDir() && writable(system) {
				return system
			}
		} else if writable(filepath.Dir(system)) {
			return system
		}
	}
	if x := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "picket")
	}
	if home, err := os.UserHomeDir(); err == nil && filepath.IsAbs(home) {
		return filepath.Join(home, ".local", "state", "picket")
	}
	return filepath.Join(os.TempDir(), "picket-"+strconv.Itoa(os.Geteuid()))
}

// RPCAddr is the host:port of the Raft and agent RPC listener: rpc when set, else the
// bind host with port 7947.
func (c Cluster) RPCAddr() string {
	if c.RPC != "" {
		return c.RPC
	}
	host, _, err := net.SplitHostPort(c.Bind)
	if err != nil {
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(DefaultRPCPort))
}

// BootstrapExpectOrDefault is the number of voters to wait for before bootstrapping Raft:
// raft.bootstrap_expect when set; else 1 when the node has no way to find peers (no join
// seeds, no DNS or mDNS discovery), so a lone node elects itself; else raft.voters.
func (c Cluster) BootstrapExpectOrDefault() int {
	if c.Raft.BootstrapExpect > 0 {
		return c.Raft.BootstrapExpect
	}
	if len(c.Join) == 0 && c.Discovery.DNS.Name == "" && !c.Discovery.MDNS.Enabled {
		return 1
	}
	return c.Raft.Voters
}

// SetDefaults sets every check field that has a default (placement, vantage, interval,
// timeout, thresholds, flap), overwriting what is there, and leaves name, type and the
// type sub-blocks alone. Call it on a new Check before filling it in; NewCheck does both
// for code-built checks.
func (c *Check) SetDefaults() {
	c.Placement = PlacementLocal
	c.Vantage = Vantage{Nodes: 1, Quorum: 1}
	c.Interval = Duration(30 * time.Second)
	c.Timeout = Duration(DefaultCheckTimeout)
	c.Thresholds = Thresholds{SuccessBeforePassing: 1, FailuresBeforeWarning: 1, FailuresBeforeCritical: 3}
	c.Flap = Flap{Window: Duration(10 * time.Minute), MaxTransitions: 5}
}

// defaultTimeout applies the timeout rule after decoding: when the timeout was not given
// and the interval is shorter than the default timeout, the timeout is the interval.
func (c *Check) defaultTimeout(timeoutGiven bool) {
	if !timeoutGiven && c.Interval.D() < DefaultCheckTimeout {
		c.Timeout = c.Interval
	}
}

// SetDefaults sets the http check defaults: method GET, expect_status ["2xx"],
// follow_redirects true, certificate expiry warning at 14 days and critical at 7.
func (h *HTTPCheck) SetDefaults() {
	h.Method = "GET"
	h.ExpectStatus = []string{"2xx"}
	h.FollowRedirects = true
	h.TLS.WarningDays = 14
	h.TLS.CriticalDays = 7
}

// SetDefaults sets the dns check defaults: type A over udp, expecting NOERROR.
func (d *DNSCheck) SetDefaults() {
	d.Type = "A"
	d.Protocol = "udp"
	d.ExpectRcode = "NOERROR"
}

// SetDefaults sets the tls check defaults: warning at 14 days before expiry, critical at 7.
func (t *TLSCheck) SetDefaults() {
	t.WarningDays = 14
	t.CriticalDays = 7
}

// NewCheck returns a check of the given type with every default set and the sub-block
// of that type allocated with its own defaults; the caller fills in the target
// (HTTP.URL, TCP.Address, ...). An unknown type gets no sub-block.
func NewCheck(name, typ string) Check {
	c := Check{Name: name, Type: typ}
	c.SetDefaults()
	switch typ {
	case TypeHTTP:
		c.HTTP = &HTTPCheck{}
		c.HTTP.SetDefaults()
	case TypeTCP:
		c.TCP = &TCPCheck{}
	case TypeDNS:
		c.DNS = &DNSCheck{}
		c.DNS.SetDefaults()
	case TypeTLS:
		c.TLS = &TLSCheck{}
		c.TLS.SetDefaults()
	case TypeGRPC:
		c.GRPC = &GRPCCheck{}
	case TypeExec:
		c.Exec = &ExecCheck{}
	}
	return c
}

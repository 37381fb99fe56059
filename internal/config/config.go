// Package config holds picket's YAML configuration: the schema, its defaults, strict
// decoding with file/line/key-path errors, and validation of the whole tree.
//
// The structs here are the YAML (and, for checks, JSON) contract of DESIGN.md §4. Code-only
// settings live with the code that uses them, never here.
//
// Load and Parse read a file: ${VAR} expansion on the raw text, then Default(), then a
// strict decode onto it, then Validate; every problem comes back at once as Errors, each
// with file, line and key path. Embedded is the built-in default config. DecodeCheckJSON
// and Check.Validate serve the HTTP API. Redacted, Hash and RestartRequired serve
// `picket validate`, config drift detection and SIGHUP reloads. Nothing here holds state
// between calls: every function is safe to call concurrently.
package config

// Config is the whole of one picket configuration file.
type Config struct {
	NodeName   string     `yaml:"node_name" json:"node_name"`
	DataDir    string     `yaml:"data_dir" json:"data_dir"`
	Log        Log        `yaml:"log" json:"log"`
	HTTP       HTTP       `yaml:"http" json:"http"`
	Cluster    Cluster    `yaml:"cluster" json:"cluster"`
	Collectors Collectors `yaml:"collectors" json:"collectors"`
	Checks     []Check    `yaml:"checks" json:"checks"`
	Exporters  Exporters  `yaml:"exporters" json:"exporters"`
	Logs       Logs       `yaml:"logs" json:"logs"`
}

// Log configures the agent's own logging.
type Log struct {
	Level  string `yaml:"level" json:"level"`   // debug | info | warn | error
	Format string `yaml:"format" json:"format"` // text | json
}

// HTTP configures the API, /metrics, /healthz and /readyz listener.
type HTTP struct {
	Listen string `yaml:"listen" json:"listen"`
	Token  Secret `yaml:"token" json:"token"`
	// TLS serves HTTPS when CertFile is set; CAFile, when set, requires client certificates.
	TLS TLS `yaml:"tls" json:"tls"`
}

// TLS names PEM files. Relative paths resolve against the config file's folder.
type TLS struct {
	CAFile   string `yaml:"ca_file" json:"ca_file"`
	CertFile string `yaml:"cert_file" json:"cert_file"`
	KeyFile  string `yaml:"key_file" json:"key_file"`
}

// Enabled reports whether any TLS file is configured.
func (t TLS) Enabled() bool { return t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" }

// Cluster configures membership, discovery, security and Raft.
type Cluster struct {
	Name      string `yaml:"name" json:"name"`           // memberlist label
	Bind      string `yaml:"bind" json:"bind"`           // host:port for gossip
	Advertise string `yaml:"advertise" json:"advertise"` // host or host:port peers use
	RPC       string `yaml:"rpc" json:"rpc"`             // host:port for Raft and agent RPC
	// Key is the gossip key, base64 of 16, 24 or 32 bytes (see KeyBytes). It is required
	// unless Insecure is set or Bind is a loopback address (127.0.0.0/8, ::1), where only
	// this machine can reach the agent.
	Key       Secret    `yaml:"key" json:"key"`
	Insecure  bool      `yaml:"insecure" json:"insecure"` // allow gossip without a key on other addresses
	Join      []string  `yaml:"join" json:"join"`         // seed addresses, host:port
	Discovery Discovery `yaml:"discovery" json:"discovery"`
	Profile   string    `yaml:"profile" json:"profile"` // lan | wan | fast
	Server    bool      `yaml:"server" json:"server"`   // may be a Raft voter
	Raft      Raft      `yaml:"raft" json:"raft"`
	TLS       TLS       `yaml:"tls" json:"tls"` // mutual TLS on the RPC port
	// RetryJoinInterval is the pause between join attempts while no seed answers.
	RetryJoinInterval Duration          `yaml:"retry_join_interval" json:"retry_join_interval"`
	Tags              map[string]string `yaml:"tags" json:"tags"` // gossiped with the node
}

// Discovery configures libcluster-style peer discovery besides static seeds.
type Discovery struct {
	DNS  DNSDiscovery  `yaml:"dns" json:"dns"`
	MDNS MDNSDiscovery `yaml:"mdns" json:"mdns"`
}

// DNSDiscovery polls A or SRV records (a Kubernetes headless service, for example).
type DNSDiscovery struct {
	Name     string   `yaml:"name" json:"name"`         // empty: disabled
	Type     string   `yaml:"type" json:"type"`         // A | SRV
	Port     int      `yaml:"port" json:"port"`         // for A records
	Server   string   `yaml:"server" json:"server"`     // host:port; default: system resolver
	Interval Duration `yaml:"interval" json:"interval"` // polling interval
}

// MDNSDiscovery announces and browses the agent on the local link.
type MDNSDiscovery struct {
	Enabled bool   `yaml:"enabled" json:"enabled"`
	Service string `yaml:"service" json:"service"` // default _picket._tcp
}

// Raft configures the aggregator's Raft group.
type Raft struct {
	Voters          int `yaml:"voters" json:"voters"`
	BootstrapExpect int `yaml:"bootstrap_expect" json:"bootstrap_expect"`
}

// Collectors configures host metric collection.
type Collectors struct {
	Interval Duration `yaml:"interval" json:"interval"`
	Disabled []string `yaml:"disabled" json:"disabled"`   // collector names: cpu, load, memory, swap, filesystem, disk, network, uptime
	HostRoot string   `yaml:"host_root" json:"host_root"` // host's / when running in a container
}

// Exporters configures Prometheus exposition and OTLP export.
type Exporters struct {
	Prometheus Prometheus `yaml:"prometheus" json:"prometheus"`
	OTLP       OTLP       `yaml:"otlp" json:"otlp"`
}

// Prometheus configures /metrics on http.listen.
type Prometheus struct {
	Enabled bool `yaml:"enabled" json:"enabled"`
}

// OTLP configures the OTLP exporter; an empty Endpoint disables it.
type OTLP struct {
	Endpoint string            `yaml:"endpoint" json:"endpoint"` // host:port
	Protocol string            `yaml:"protocol" json:"protocol"` // grpc | http
	Insecure bool              `yaml:"insecure" json:"insecure"` // plaintext
	Headers  map[string]Secret `yaml:"headers" json:"headers"`
	Interval Duration          `yaml:"interval" json:"interval"`
	Timeout  Duration          `yaml:"timeout" json:"timeout"`
	Logs     bool              `yaml:"logs" json:"logs"` // export the cluster log (aggregator only)
	TLS      TLS               `yaml:"tls" json:"tls"`
}

// Logs configures the cluster log store and the agent's spool.
type Logs struct {
	Retention Retention `yaml:"retention" json:"retention"`
	Spool     Spool     `yaml:"spool" json:"spool"`
}

// Retention bounds the cluster log store kept by the voters.
type Retention struct {
	MaxRecords int      `yaml:"max_records" json:"max_records"`
	MaxBytes   Size     `yaml:"max_bytes" json:"max_bytes"`
	MaxAge     Duration `yaml:"max_age" json:"max_age"`
}

// Spool bounds the agent's durable queue of records waiting for the aggregator.
type Spool struct {
	MaxBytes Size `yaml:"max_bytes" json:"max_bytes"`
}

package config

import "fmt"

// Check is one health check definition. The same schema is used in YAML files and, as JSON,
// by POST /v1/checks, /v1/run and /v1/sweep. Exactly the sub-struct named by Type is set.
type Check struct {
	Name       string     `yaml:"name" json:"name"`
	Type       string     `yaml:"type" json:"type"`           // http | tcp | dns | tls | grpc | exec
	Placement  string     `yaml:"placement" json:"placement"` // local (default) | cluster
	Vantage    Vantage    `yaml:"vantage" json:"vantage"`
	Interval   Duration   `yaml:"interval" json:"interval"`
	Timeout    Duration   `yaml:"timeout" json:"timeout"`
	Thresholds Thresholds `yaml:"thresholds" json:"thresholds"`
	Flap       Flap       `yaml:"flap" json:"flap"`

	HTTP *HTTPCheck `yaml:"http,omitempty" json:"http,omitempty"`
	TCP  *TCPCheck  `yaml:"tcp,omitempty" json:"tcp,omitempty"`
	DNS  *DNSCheck  `yaml:"dns,omitempty" json:"dns,omitempty"`
	TLS  *TLSCheck  `yaml:"tls,omitempty" json:"tls,omitempty"`
	GRPC *GRPCCheck `yaml:"grpc,omitempty" json:"grpc,omitempty"`
	Exec *ExecCheck `yaml:"exec,omitempty" json:"exec,omitempty"`
}

// Check types.
const (
	TypeHTTP = "http"
	TypeTCP  = "tcp"
	TypeDNS  = "dns"
	TypeTLS  = "tls"
	TypeGRPC = "grpc"
	TypeExec = "exec"
)

// Placements.
const (
	PlacementLocal   = "local"
	PlacementCluster = "cluster"
)

// Vantage runs a cluster check on Nodes distinct nodes; its combined status is critical
// only when Quorum of them report critical.
type Vantage struct {
	Nodes  int `yaml:"nodes" json:"nodes"`
	Quorum int `yaml:"quorum" json:"quorum"`
}

// Thresholds turn consecutive results into a state, as in Consul.
type Thresholds struct {
	SuccessBeforePassing   int `yaml:"success_before_passing" json:"success_before_passing"`
	FailuresBeforeWarning  int `yaml:"failures_before_warning" json:"failures_before_warning"`
	FailuresBeforeCritical int `yaml:"failures_before_critical" json:"failures_before_critical"`
}

// Flap marks a check flapping when it changes state more than MaxTransitions times in Window.
type Flap struct {
	Window         Duration `yaml:"window" json:"window"`
	MaxTransitions int      `yaml:"max_transitions" json:"max_transitions"`
}

// HTTPCheck probes a URL.
type HTTPCheck struct {
	URL             string            `yaml:"url" json:"url"`
	Method          string            `yaml:"method" json:"method"`
	Headers         map[string]string `yaml:"headers" json:"headers"`
	Body            string            `yaml:"body" json:"body"`
	ExpectStatus    []string          `yaml:"expect_status" json:"expect_status"` // "200", "2xx", ...
	ExpectBody      string            `yaml:"expect_body" json:"expect_body"`     // substring
	ExpectBodyRegex string            `yaml:"expect_body_regex" json:"expect_body_regex"`
	FollowRedirects bool              `yaml:"follow_redirects" json:"follow_redirects"`
	TLS             TLSClient         `yaml:"tls" json:"tls"`
}

// TLSClient is the client side of TLS for http checks.
type TLSClient struct {
	CAFile             string `yaml:"ca_file" json:"ca_file"`
	ServerName         string `yaml:"server_name" json:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" json:"insecure_skip_verify"`
	WarningDays        int    `yaml:"warning_days" json:"warning_days"`   // cert expiry → warning
	CriticalDays       int    `yaml:"critical_days" json:"critical_days"` // cert expiry → critical
}

// TCPCheck connects to an address and optionally sends and expects bytes.
type TCPCheck struct {
	Address string `yaml:"address" json:"address"` // host:port
	Send    string `yaml:"send" json:"send"`
	Expect  string `yaml:"expect" json:"expect"` // substring of the first reply
}

// DNSCheck resolves a name with miekg/dns.
type DNSCheck struct {
	Name          string   `yaml:"name" json:"name"`
	Type          string   `yaml:"type" json:"type"`         // A, AAAA, CNAME, MX, TXT, SRV, NS, ...
	Server        string   `yaml:"server" json:"server"`     // host:port; default: first of /etc/resolv.conf
	Protocol      string   `yaml:"protocol" json:"protocol"` // udp | tcp
	ExpectRcode   string   `yaml:"expect_rcode" json:"expect_rcode"`
	ExpectAnswers []string `yaml:"expect_answers" json:"expect_answers"` // each must be in some answer's value
}

// TLSCheck connects with TLS and checks the certificate chain and its expiry.
type TLSCheck struct {
	Address            string `yaml:"address" json:"address"` // host:port
	ServerName         string `yaml:"server_name" json:"server_name"`
	CAFile             string `yaml:"ca_file" json:"ca_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" json:"insecure_skip_verify"`
	WarningDays        int    `yaml:"warning_days" json:"warning_days"`
	CriticalDays       int    `yaml:"critical_days" json:"critical_days"`
}

// GRPCCheck calls grpc.health.v1.Health/Check.
type GRPCCheck struct {
	Address            string `yaml:"address" json:"address"`
	Service            string `yaml:"service" json:"service"`
	TLS                bool   `yaml:"tls" json:"tls"`
	CAFile             string `yaml:"ca_file" json:"ca_file"`
	ServerName         string `yaml:"server_name" json:"server_name"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" json:"insecure_skip_verify"`
}

// ExecCheck runs a command (argv, never a shell string). Exit 0/1/2 mean
// passing/warning/critical, as with Nagios plugins; anything else is critical.
// Exec checks exist only in local config files; the API refuses them.
type ExecCheck struct {
	Command []string          `yaml:"command" json:"command"`
	Env     map[string]string `yaml:"env" json:"env"`
	Dir     string            `yaml:"dir" json:"dir"`
}

// TargetField names the key of a check type's block that holds its target: "url" for http,
// "address" for tcp, tls and grpc, "name" for dns; "" for exec, which has no target.
func TargetField(typ string) string {
	switch typ {
	case TypeHTTP:
		return "url"
	case TypeTCP, TypeTLS, TypeGRPC:
		return "address"
	case TypeDNS:
		return "name"
	}
	return ""
}

// WithTarget returns a copy of c aimed at target (see TargetField). The type's block is
// copied, so c itself is unchanged. It fails for exec and for a check without its block.
func (c Check) WithTarget(target string) (Check, error) {
	switch {
	case c.Type == TypeHTTP && c.HTTP != nil:
		h := *c.HTTP
		h.URL = target
		c.HTTP = &h
	case c.Type == TypeTCP && c.TCP != nil:
		t := *c.TCP
		t.Address = target
		c.TCP = &t
	case c.Type == TypeDNS && c.DNS != nil:
		d := *c.DNS
		d.Name = target
		c.DNS = &d
	case c.Type == TypeTLS && c.TLS != nil:
		t := *c.TLS
		t.Address = target
		c.TLS = &t
	case c.Type == TypeGRPC && c.GRPC != nil:
		g := *c.GRPC
		g.Address = target
		c.GRPC = &g
	default:
		return c, fmt.Errorf("%s checks have no target to set", c.Type)
	}
	return c, nil
}

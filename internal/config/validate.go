package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Limits enforced by validation.
const (
	// MaxVoters is the largest raft.voters: more voters make every commit slower and add
	// no useful fault tolerance for a monitoring cluster.
	MaxVoters = 7
	// MinCheckInterval is the shortest check interval.
	MinCheckInterval = 100 * time.Millisecond
	// MaxTagBytes bounds cluster.tags (keys plus values), which travel in the gossip node
	// metadata that memberlist limits to 512 bytes in all.
	MaxTagBytes = 256
)

// Validate checks the whole configuration and returns every problem as Errors, or nil.
// Parse and Load run it already; call it on configurations built in code. Problems name
// key paths; lines are known only during Parse.
func (c *Config) Validate() error {
	return c.validate("", nil).orNil()
}

// Validate checks one check definition on its own, as the HTTP API receives it; key paths
// start with "check.". It checks nothing about other checks (unique names) or files.
func (c *Check) Validate() error {
	v := &validator{}
	v.check(c, "check")
	return v.errs.orNil()
}

// validator collects validation errors, giving each the line of its key when known.
type validator struct {
	file  string
	lines map[string]int
	errs  Errors
}

func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, Error{File: v.file, Line: v.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
}

// line returns the line of path's key, or of the nearest parent written in the file.
func (v *validator) line(path string) int {
	for p := path; ; p = parentPath(p) {
		if l, ok := v.lines[p]; ok {
			return l
		}
		if p == "" {
			return 0
		}
	}
}

func (c *Config) validate(file string, lines map[string]int) Errors {
	v := &validator{file: file, lines: lines}
	switch {
	case c.NodeName == "":
		v.addf("node_name", "is empty and the host name is unknown; set node_name")
	case !validNodeName(c.NodeName):
		v.addf("node_name", "%q may hold only letters, digits, '.', '-' and '_' (at most 253)", c.NodeName)
	}
	if c.DataDir == "" {
		v.addf("data_dir", "is empty; set a folder picket may write to")
	}
	v.oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	v.oneOf("log.format", c.Log.Format, "text", "json")
	v.hostPort("http.listen", c.HTTP.Listen, allowEmptyHost|allowPortZero)
	v.serverTLS("http.tls", c.HTTP.TLS)
	v.cluster(&c.Cluster)
	v.collectors(&c.Collectors)
	v.checks(c.Checks)
	v.exporters(&c.Exporters)
	v.positive("logs.retention.max_records", int64(c.Logs.Retention.MaxRecords), "")
	v.positive("logs.retention.max_bytes", int64(c.Logs.Retention.MaxBytes), c.Logs.Retention.MaxBytes.String())
	v.positive("logs.retention.max_age", int64(c.Logs.Retention.MaxAge), c.Logs.Retention.MaxAge.String())
	v.positive("logs.spool.max_bytes", int64(c.Logs.Spool.MaxBytes), c.Logs.Spool.MaxBytes.String())
	return v.errs
}

func (v *validator) cluster(cl *Cluster) {
	switch {
	case cl.Name == "":
		v.addf("cluster.name", "is empty; name the cluster (agents join only agents with the same name)")
	case !validName(cl.Name):
		v.addf("cluster.name", "%q may hold only letters, digits, '.', '-' and '_' (at most 64)", cl.Name)
	}
	v.hostPort("cluster.bind", cl.Bind, allowEmptyHost|requireIP|allowPortZero)
	if cl.Advertise != "" {
		v.advertise("cluster.advertise", cl.Advertise)
	}
	if cl.RPC != "" {
		v.hostPort("cluster.rpc", cl.RPC, allowEmptyHost|requireIP|allowPortZero)
	}
	switch {
	case cl.Key != "":
		if _, err := cl.KeyBytes(); err != nil {
			v.addf("cluster.key", "%v", err)
		}
	case !cl.Insecure && !isLoopbackBind(cl.Bind):
		v.addf("cluster.key", "a gossip key is required when cluster.bind (%s) is not a loopback address; "+
			`create one with "picket keygen" and set key: ${PICKET_GOSSIP_KEY}, or set cluster.insecure: true to gossip in plain text`,
			cl.Bind)
	}
	for i, j := range cl.Join {
		v.hostPort(indexPath("cluster.join", i), j, 0)
	}
	dd := cl.Discovery.DNS
	if dd.Name != "" {
		if _, ok := dns.IsDomainName(dd.Name); !ok {
			v.addf("cluster.discovery.dns.name", "%q is not a DNS name", dd.Name)
		}
	}
	v.oneOf("cluster.discovery.dns.type", dd.Type, "A", "SRV")
	if dd.Port < 1 || dd.Port > 65535 {
		v.addf("cluster.discovery.dns.port", "%d is not a port from 1 to 65535", dd.Port)
	}
	if dd.Server != "" {
		v.hostPort("cluster.discovery.dns.server", dd.Server, 0)
	}
	v.positive("cluster.discovery.dns.interval", int64(dd.Interval), dd.Interval.String())
	if md := cl.Discovery.MDNS; md.Enabled || md.Service != DefaultMDNSService {
		if !validServiceType(md.Service) {
			v.addf("cluster.discovery.mdns.service", "%q is not a DNS-SD service type; write it like _picket._tcp", md.Service)
		}
	}
	v.oneOf("cluster.profile", cl.Profile, "lan", "wan", "fast")
	if cl.Raft.Voters < 1 || cl.Raft.Voters > MaxVoters {
		v.addf("cluster.raft.voters", "%d is not from 1 to %d (use 3 or 5 for a cluster that survives losing one or two voters)", cl.Raft.Voters, MaxVoters)
	}
	if be := cl.Raft.BootstrapExpect; be < 0 || be > max(cl.Raft.Voters, 1) {
		v.addf("cluster.raft.bootstrap_expect", "%d is not from 1 to raft.voters (%d), or 0 for the default", be, cl.Raft.Voters)
	}
	v.mutualTLS("cluster.tls", cl.TLS)
	v.positive("cluster.retry_join_interval", int64(cl.RetryJoinInterval), cl.RetryJoinInterval.String())
	tagBytes := 0
	for _, k := range slices.Sorted(maps.Keys(cl.Tags)) {
		val := cl.Tags[k]
		if k == "" {
			v.addf("cluster.tags", "has an empty key; name every tag")
		}
		tagBytes += len(k) + len(val)
	}
	if tagBytes > MaxTagBytes {
		v.addf("cluster.tags", "keys and values add up to %d bytes; keep them to %d (they travel in every gossip message about this node)", tagBytes, MaxTagBytes)
	}
}

func (v *validator) collectors(co *Collectors) {
	v.positive("collectors.interval", int64(co.Interval), co.Interval.String())
	names := CollectorNames()
	for i, n := range co.Disabled {
		v.oneOf(indexPath("collectors.disabled", i), n, names...)
	}
	if !filepath.IsAbs(co.HostRoot) {
		v.addf("collectors.host_root", "%q is not an absolute path; use / on the host or the host's / mounted in a container, like /host", co.HostRoot)
	}
}

func (v *validator) exporters(ex *Exporters) {
	o := &ex.OTLP
	if o.Endpoint != "" {
		v.hostPort("exporters.otlp.endpoint", o.Endpoint, 0)
	}
	v.oneOf("exporters.otlp.protocol", o.Protocol, "grpc", "http")
	v.positive("exporters.otlp.interval", int64(o.Interval), o.Interval.String())
	v.positive("exporters.otlp.timeout", int64(o.Timeout), o.Timeout.String())
	for _, k := range slices.Sorted(maps.Keys(o.Headers)) {
		if !isToken(k) {
			v.addf(mapKeyPath("exporters.otlp.headers", k), "%q is not a valid header name", k)
		}
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		v.addf("exporters.otlp.tls", "cert_file and key_file go together (a client certificate); set both or neither")
	}
	v.fileExists("exporters.otlp.tls.ca_file", o.TLS.CAFile)
	v.fileExists("exporters.otlp.tls.cert_file", o.TLS.CertFile)
	v.fileExists("exporters.otlp.tls.key_file", o.TLS.KeyFile)
}

func (v *validator) checks(cs []Check) {
	first := map[string]int{}
	for i := range cs {
		p := indexPath("checks", i)
		v.check(&cs[i], p)
		name := cs[i].Name
		if name == "" {
			continue
		}
		j, dup := first[name]
		if !dup {
			first[name] = i
			continue
		}
		where := ""
		if l := v.line(indexPath("checks", j)); l > 0 {
			where = fmt.Sprintf(" on line %d", l)
		}
		v.addf(p+".name", "%q is already the name of checks[%d]%s; check names must be unique", name, j, where)
	}
}

// check validates one check at key path p.
func (v *validator) check(c *Check, p string) {
	switch {
	case c.Name == "":
		v.addf(p+".name", "is required: letters, digits, '.', '-' and '_' (at most 64)")
	case !validName(c.Name):
		v.addf(p+".name", "%q may hold only letters, digits, '.', '-' and '_' (at most 64)", c.Name)
	}
	types := CheckTypes()
	known := slices.Contains(types, c.Type)
	if c.Type == "" {
		v.addf(p+".type", "is required; use one of %s", strings.Join(types, ", "))
	} else {
		v.oneOf(p+".type", c.Type, types...)
	}
	blocks := []struct {
		name string
		set  bool
	}{
		{TypeHTTP, c.HTTP != nil}, {TypeTCP, c.TCP != nil}, {TypeDNS, c.DNS != nil},
		{TypeTLS, c.TLS != nil}, {TypeGRPC, c.GRPC != nil}, {TypeExec, c.Exec != nil},
	}
	for _, b := range blocks {
		switch {
		case b.set && b.name != c.Type && known:
			v.addf(p+"."+b.name, "does not fit type %q; remove it (a check has only the block named by its type)", c.Type)
		case !b.set && b.name == c.Type:
			v.addf(p, "type %q needs a %q block with its settings, like %s", c.Type, c.Type+":", blockExample(c.Type))
		}
	}

	v.oneOf(p+".placement", c.Placement, PlacementLocal, PlacementCluster)
	if c.Type == TypeExec && c.Placement == PlacementCluster {
		v.addf(p+".placement", "exec checks run only on the node whose config file has them; use placement: local")
	}
	vn := c.Vantage
	if vn.Nodes < 1 {
		v.addf(p+".vantage.nodes", "%d is less than 1", vn.Nodes)
	} else if vn.Nodes > 1 && c.Placement != PlacementCluster {
		v.addf(p+".vantage.nodes", "%d nodes need placement: cluster; a local check runs only on its own node", vn.Nodes)
	}
	if vn.Quorum < 1 || (vn.Nodes >= 1 && vn.Quorum > vn.Nodes) {
		v.addf(p+".vantage.quorum", "%d is not from 1 to vantage.nodes (%d)", vn.Quorum, vn.Nodes)
	}
	if c.Interval.D() < MinCheckInterval {
		v.addf(p+".interval", "%s is too short; use %s or more", c.Interval, Duration(MinCheckInterval))
	}
	switch {
	case c.Timeout <= 0:
		v.addf(p+".timeout", "must be more than 0")
	case c.Timeout > c.Interval && c.Interval > 0:
		v.addf(p+".timeout", "%s is longer than the interval (%s); a check must finish before its next run", c.Timeout, c.Interval)
	}
	th := c.Thresholds
	v.atLeast(p+".thresholds.success_before_passing", th.SuccessBeforePassing, 1)
	v.atLeast(p+".thresholds.failures_before_warning", th.FailuresBeforeWarning, 1)
	v.atLeast(p+".thresholds.failures_before_critical", th.FailuresBeforeCritical, 1)
	if th.FailuresBeforeCritical < th.FailuresBeforeWarning && th.FailuresBeforeCritical >= 1 {
		v.addf(p+".thresholds.failures_before_critical", "%d is less than failures_before_warning (%d); a check turns warning before it turns critical",
			th.FailuresBeforeCritical, th.FailuresBeforeWarning)
	}
	if c.Flap.Window <= 0 {
		v.addf(p+".flap.window", "must be more than 0")
	}
	v.atLeast(p+".flap.max_transitions", c.Flap.MaxTransitions, 1)

	// Only the block that fits the type is validated; the others are reported above.
	switch {
	case c.Type == TypeHTTP && c.HTTP != nil:
		v.httpCheck(c.HTTP, p+".http")
	case c.Type == TypeTCP && c.TCP != nil:
		v.hostPort(p+".tcp.address", c.TCP.Address, 0)
	case c.Type == TypeDNS && c.DNS != nil:
		v.dnsCheck(c.DNS, p+".dns")
	case c.Type == TypeTLS && c.TLS != nil:
		v.hostPort(p+".tls.address", c.TLS.Address, 0)
		v.expiryDays(p+".tls", c.TLS.WarningDays, c.TLS.CriticalDays)
	case c.Type == TypeGRPC && c.GRPC != nil:
		v.hostPort(p+".grpc.address", c.GRPC.Address, 0)
	case c.Type == TypeExec && c.Exec != nil:
		v.execCheck(c.Exec, p+".exec")
	}
}

// blockExample shows the smallest valid sub-block of a check type.
func blockExample(typ string) string {
	switch typ {
	case TypeHTTP:
		return "http: {url: http://127.0.0.1:8080/health}"
	case TypeTCP:
		return "tcp: {address: 127.0.0.1:5432}"
	case TypeDNS:
		return "dns: {name: example.com}"
	case TypeTLS:
		return "tls: {address: 127.0.0.1:443}"
	case TypeGRPC:
		return "grpc: {address: 127.0.0.1:50051}"
	case TypeExec:
		return "exec: {command: [/usr/lib/nagios/plugins/check_disk, -w, 20%]}"
	}
	return typ + ": {...}"
}

func (v *validator) httpCheck(h *HTTPCheck, p string) {
	switch u, err := url.Parse(h.URL); {
	case h.URL == "":
		v.addf(p+".url", "is required, like http://127.0.0.1:8080/health")
	case err != nil:
		v.addf(p+".url", "%q is not a URL: %v", h.URL, errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		v.addf(p+".url", "%q is not an http:// or https:// URL", h.URL)
	case u.Host == "" || u.Hostname() == "":
		v.addf(p+".url", "%q has no host", h.URL)
	case u.Port() != "" && !validPort(u.Port(), false):
		v.addf(p+".url", "%q has port %q, which is not a number from 1 to 65535", h.URL, u.Port())
	}
	if !isToken(h.Method) {
		v.addf(p+".method", "%q is not an HTTP method, like GET, HEAD or POST", h.Method)
	}
	for _, k := range slices.Sorted(maps.Keys(h.Headers)) {
		if !isToken(k) {
			v.addf(mapKeyPath(p+".headers", k), "%q is not a valid header name", k)
		}
	}
	if len(h.ExpectStatus) == 0 {
		v.addf(p+".expect_status", `lists no status; list at least one, like "200" or "2xx"`)
	}
	for i, s := range h.ExpectStatus {
		if !validStatusPattern(s) {
			v.addf(indexPath(p+".expect_status", i), `%q is not a status; use a code like "200" or a class like "2xx" (1xx to 5xx)`, s)
		}
	}
	if h.ExpectBodyRegex != "" {
		if _, err := regexp.Compile(h.ExpectBodyRegex); err != nil {
			v.addf(p+".expect_body_regex", "does not compile: %v", err)
		}
	}
	v.expiryDays(p+".tls", h.TLS.WarningDays, h.TLS.CriticalDays)
}

func (v *validator) dnsCheck(d *DNSCheck, p string) {
	if d.Name == "" {
		v.addf(p+".name", "is required: the name to resolve, like example.com")
	} else if _, ok := dns.IsDomainName(d.Name); !ok {
		v.addf(p+".name", "%q is not a DNS name", d.Name)
	}
	if _, ok := dns.StringToType[d.Type]; !ok {
		msg := fmt.Sprintf("%q is not a DNS record type, like A, AAAA, CNAME, MX, NS, SRV or TXT", d.Type)
		if _, upper := dns.StringToType[strings.ToUpper(d.Type)]; upper {
			msg = fmt.Sprintf("%q is not a DNS record type; did you mean %q?", d.Type, strings.ToUpper(d.Type))
		}
		v.addf(p+".type", "%s", msg)
	}
	if _, ok := dns.StringToRcode[d.ExpectRcode]; !ok {
		msg := fmt.Sprintf("%q is not a DNS response code, like NOERROR, NXDOMAIN or SERVFAIL", d.ExpectRcode)
		if _, upper := dns.StringToRcode[strings.ToUpper(d.ExpectRcode)]; upper {
			msg = fmt.Sprintf("%q is not a DNS response code; did you mean %q?", d.ExpectRcode, strings.ToUpper(d.ExpectRcode))
		}
		v.addf(p+".expect_rcode", "%s", msg)
	}
	v.oneOf(p+".protocol", d.Protocol, "udp", "tcp")
	if d.Server != "" {
		v.hostPort(p+".server", d.Server, 0)
	}
}

func (v *validator) execCheck(e *ExecCheck, p string) {
	switch {
	case len(e.Command) == 0:
		v.addf(p+".command", "is required: the program and its arguments as a list, like [/usr/bin/check_disk, -w, 20%%]")
	case e.Command[0] == "":
		v.addf(p+".command[0]", "is empty; the first item is the program to run")
	}
	for _, k := range slices.Sorted(maps.Keys(e.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			v.addf(mapKeyPath(p+".env", k), "%q is not an environment variable name", k)
		}
	}
}

// expiryDays checks certificate expiry thresholds: warning_days >= critical_days >= 0.
func (v *validator) expiryDays(p string, warning, critical int) {
	switch {
	case critical < 0:
		v.addf(p+".critical_days", "%d is negative; use 0 or more", critical)
	case warning < critical:
		v.addf(p+".warning_days", "%d is less than critical_days (%d); a certificate turns warning before it turns critical", warning, critical)
	}
}

// oneOf checks that val is one of allowed, suggesting the closest on a typo.
func (v *validator) oneOf(path, val string, allowed ...string) {
	if slices.Contains(allowed, val) {
		return
	}
	if val == "" {
		v.addf(path, "is empty; use one of %s", strings.Join(allowed, ", "))
		return
	}
	if s := suggest(val, allowed); s != "" {
		v.addf(path, "%q is not allowed; did you mean %q? (one of %s)", val, s, strings.Join(allowed, ", "))
		return
	}
	v.addf(path, "%q is not allowed; use one of %s", val, strings.Join(allowed, ", "))
}

// positive checks that n > 0; shown is how the value is written, when not a plain number.
func (v *validator) positive(path string, n int64, shown string) {
	if n > 0 {
		return
	}
	if shown == "" {
		shown = strconv.FormatInt(n, 10)
	}
	v.addf(path, "%s is not more than 0", shown)
}

func (v *validator) atLeast(path string, n, least int) {
	if n < least {
		v.addf(path, "%d is less than %d", n, least)
	}
}

// file checks that name, when set, is an existing file.
func (v *validator) fileExists(path, name string) {
	if name == "" {
		return
	}
	fi, err := os.Stat(name)
	var pe *fs.PathError
	switch {
	case errors.Is(err, fs.ErrNotExist):
		v.addf(path, "file %q does not exist", name)
	case errors.As(err, &pe):
		v.addf(path, "cannot read %q: %v", name, pe.Err)
	case err != nil:
		v.addf(path, "cannot read %q: %v", name, err)
	case fi.IsDir():
		v.addf(path, "%q is a folder, not a file", name)
	}
}

// serverTLS checks a listener's TLS: a certificate and key together, and client CA only
// with them.
func (v *validator) serverTLS(p string, t TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.addf(p, "cert_file and key_file go together; set both or neither")
	}
	if t.CAFile != "" && t.CertFile == "" && t.KeyFile == "" {
		v.addf(p+".ca_file", "asks for client certificates, which needs TLS; set cert_file and key_file too")
	}
	v.fileExists(p+".ca_file", t.CAFile)
	v.fileExists(p+".cert_file", t.CertFile)
	v.fileExists(p+".key_file", t.KeyFile)
}

// mutualTLS checks TLS where both sides present certificates: all three files or none.
func (v *validator) mutualTLS(p string, t TLS) {
	if t.Enabled() {
		var missing []string
		for _, f := range []struct{ key, val string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.val == "" {
				missing = append(missing, f.key)
			}
		}
		if len(missing) > 0 {
			v.addf(p, "mutual TLS needs ca_file, cert_file and key_file together; %s missing", strings.Join(missing, " and "))
		}
	}
	v.fileExists(p+".ca_file", t.CAFile)
	v.fileExists(p+".cert_file", t.CertFile)
	v.fileExists(p+".key_file", t.KeyFile)
}

// Address rules for hostPort.
type addrFlags uint8

const (
	allowEmptyHost addrFlags = 1 << iota // ":7946" listens on every address
	requireIP                            // a bind address, not a name
	allowPortZero                        // port 0 picks a free port
)

// hostPort checks a host:port address.
func (v *validator) hostPort(path, s string, f addrFlags) {
	if msg := checkHostPort(s, f); msg != "" {
		v.addf(path, "%s", msg)
	}
}

func checkHostPort(s string, f addrFlags) string {
	const like = "like 10.0.0.1:7946, or [::1]:7946 for IPv6"
	if s == "" {
		return "is empty; write host:port, " + like
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var ae *net.AddrError
		switch {
		case errors.As(err, &ae) && strings.Contains(ae.Err, "missing port"):
			return fmt.Sprintf("%q has no port; write host:port, %s", s, like)
		case errors.As(err, &ae) && strings.Contains(ae.Err, "too many colons"):
			return fmt.Sprintf("%q is not host:port; write IPv6 addresses in brackets, like [::1]:7946", s)
		}
		return fmt.Sprintf("%q is not host:port, %s", s, like)
	}
	if !validPort(port, f&allowPortZero != 0) {
		lowest := "1"
		if f&allowPortZero != 0 {
			lowest = "0"
		}
		return fmt.Sprintf("port %q in %q is not a number from %s to 65535", port, s, lowest)
	}
	switch {
	case host == "":
		if f&allowEmptyHost == 0 {
			return fmt.Sprintf("%q has no host; write host:port, %s", s, like)
		}
	case f&requireIP != 0:
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Sprintf("host %q in %q must be an IP address, like 0.0.0.0 or 127.0.0.1, not a name", host, s)
		}
	case !validHost(host):
		return fmt.Sprintf("host %q in %q is neither an IP address nor a DNS name", host, s)
	}
	return ""
}

// advertise checks cluster.advertise: a host, or host:port.
func (v *validator) advertise(path, s string) {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		if !validPort(port, false) {
			v.addf(path, "port %q in %q is not a number from 1 to 65535", port, s)
			return
		}
		host = h
	}
	if !validHost(host) {
		v.addf(path, "%q is not a host or host:port that peers can reach", s)
		return
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		v.addf(path, "%q is not an address peers can reach; advertise this node's own IP address or name", s)
	}
}

func validPort(s string, zeroOK bool) bool {
	n, err := strconv.Atoi(s)
	if err != nil || strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		return false
	}
	return n <= 65535 && (n >= 1 || zeroOK && n == 0)
}

// isLoopbackBind reports whether a bind address is on a loopback IP, which needs no key.
func isLoopbackBind(bind string) bool {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// KeyBytes decodes cluster.key (standard base64 of 16, 24 or 32 bytes, for AES-128,
// AES-192 or AES-256). It returns nil and no error when no key is set. Errors never
// contain the key.
func (c Cluster) KeyBytes() ([]byte, error) {
	if c.Key == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(c.Key.Value()))
	if err != nil {
		return nil, errors.New(`is not valid base64; create a key with "picket keygen"`)
	}
	switch len(b) {
	case 16, 24, 32:
		return b, nil
	}
	return nil, fmt.Errorf(`decodes to %d bytes, not 16, 24 or 32; create a key with "picket keygen"`, len(b))
}

// validHost reports whether s is an IP address or a DNS name (letters, digits, '-' and
// '_' in labels of 1 to 63, at most 253 in all, an optional final dot).
func validHost(s string) bool {
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c == '-' || c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return false
			}
		}
	}
	return true
}

// validName reports whether s matches [A-Za-z0-9_.-]{1,64}: check and cluster names.
func validName(s string) bool { return len(s) <= 64 && validNodeName(s) }

// validNodeName reports whether s matches [A-Za-z0-9_.-]{1,253}: host names fit.
func validNodeName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '-' || c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// isToken reports whether s is an RFC 9110 token: an HTTP method or header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validStatusPattern reports whether s is a status code 100..599 or a class 1xx..5xx.
func validStatusPattern(s string) bool {
	if len(s) != 3 || s[0] < '1' || s[0] > '5' {
		return false
	}
	if s[1:] == "xx" {
		return true
	}
	return s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
}

// validServiceType reports whether s is a DNS-SD service type like _picket._tcp: an
// underscore, 1 to 15 letters, digits or '-', then ._tcp or ._udp.
func validServiceType(s string) bool {
	name, proto, ok := strings.Cut(s, ".")
	if !ok || (proto != "_tcp" && proto != "_udp") || len(name) < 2 || len(name) > 16 || name[0] != '_' {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !(c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

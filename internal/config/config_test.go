package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the testdata/invalid-*.yaml.err golden files")

// testKey is a valid gossip key (base64 of 16 bytes) for configs that need one.
const testKey = "MDEyMzQ1Njc4OWFiY2RlZg=="

// env returns a lookup function over vars only, so tests never see the real environment.
func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func absTestdata(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

// TestInvalidFiles pins the full error message of every testdata/invalid-*.yaml in its
// .err golden file. Run with -update to rewrite them after a deliberate change.
func TestInvalidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid-*.yaml")
	if err != nil || len(files) < 10 {
		t.Fatalf("found %d invalid-*.yaml files (err %v), want at least 10", len(files), err)
	}
	abs := absTestdata(t)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Parse(f, readFile(t, f), env(nil))
			if err == nil {
				t.Fatalf("loaded without error, want errors")
			}
			if c != nil {
				t.Errorf("returned a config along with errors")
			}
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error is %T, want a non-empty Errors", err)
			}
			for _, e := range errs {
				if e.File != f {
					t.Errorf("error %q names file %q, want %q", e, e.File, f)
				}
			}
			got := strings.ReplaceAll(err.Error(), abs, "$TESTDATA") + "\n"
			golden := f + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want := string(readFile(t, golden))
			if got != want {
				t.Errorf("errors differ from %s (run go test -update to rewrite)\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
	goldens, _ := filepath.Glob("testdata/*.err")
	for _, g := range goldens {
		if !slices.Contains(files, strings.TrimSuffix(g, ".err")) {
			t.Errorf("%s has no matching .yaml file; remove it", g)
		}
	}
}

// TestErrorsLines checks that errors point at the line of the offending key, also after
// ${VAR} expansion on earlier lines, and that every error of a file is reported.
func TestErrorsLines(t *testing.T) {
	text := `node_name: ${NAME:-n1}
cluster:
  bind: ${BIND}
  raft:
    voters: ${VOTERS}
checks:
  - name: a
    type: tcp
    interval: soon
    tcp: {address: "${TARGET}"}
`
	_, err := Parse("f.yaml", []byte(text), env(map[string]string{"BIND": "127.0.0.1:7946", "VOTERS": "9", "TARGET": "nohost"}))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want Errors", err)
	}
	want := []struct {
		line int
		path string
	}{{5, "cluster.raft.voters"}, {9, "checks[0].interval"}, {10, "checks[0].tcp.address"}}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, w := range want {
		if errs[i].Line != w.line || errs[i].Path != w.path {
			t.Errorf("error %d at line %d path %s, want line %d path %s", i, errs[i].Line, errs[i].Path, w.line, w.path)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "bad.yaml", Line: 5, Path: "checks[1].interval", Msg: "m"}, "bad.yaml:5: checks[1].interval: m"},
		{Error{File: "bad.yaml", Path: "cluster.key", Msg: "m"}, "bad.yaml: cluster.key: m"},
		{Error{File: "bad.yaml", Line: 2, Msg: "m"}, "bad.yaml:2: m"},
		{Error{Path: "check.http.url", Msg: "m"}, "check.http.url: m"},
		{Error{Line: 3, Msg: "m"}, "line 3: m"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	if got := (Errors{{Msg: "a"}, {Msg: "b"}}).Error(); got != "a\nb" {
		t.Errorf("Errors.Error() = %q, want one error per line", got)
	}
}

func TestSuggest(t *testing.T) {
	keys := []string{"name", "type", "interval", "timeout", "thresholds"}
	tests := map[string]string{
		"intervl": "interval", "nmae": "name", "Type": "type", "timout": "timeout",
		"treshholds": "thresholds", "colour": "", "x": "",
	}
	for in, want := range tests {
		if got := suggest(in, keys); got != want {
			t.Errorf("suggest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.yaml")
	if len(files) < 3 {
		t.Fatalf("found %d valid-*.yaml files, want at least 3", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Parse(f, readFile(t, f), env(nil))
			if err != nil {
				t.Fatalf("want no error, got:\n%v", err)
			}
			if err := c.Validate(); err != nil {
				t.Errorf("Validate after Parse: %v", err)
			}
		})
	}
}

// TestFullFile decodes a file that sets every key to a non-default value and compares the
// whole result.
func TestFullFile(t *testing.T) {
	td := absTestdata(t)
	tls := TLS{CAFile: td + "/tls/ca.pem", CertFile: td + "/tls/cert.pem", KeyFile: td + "/tls/key.pem"}
	base := NewCheck("", "")
	check := func(name, typ string, f func(c *Check)) Check {
		c := base
		c.Name, c.Type = name, typ
		f(&c)
		return c
	}
	want := &Config{
		NodeName: "web-1",
		DataDir:  td + "/state",
		Log:      Log{Level: "debug", Format: "json"},
		HTTP:     HTTP{Listen: "0.0.0.0:7948", Token: "s3cr3t-token", TLS: tls},
		Cluster: Cluster{
			Name: "prod", Bind: "0.0.0.0:7946", Advertise: "10.0.0.5", RPC: "0.0.0.0:7947",
			Key: testKey, Join: []string{"10.0.0.1:7946", "picket-0.picket:7946", "[fd00::1]:7946"},
			Discovery: Discovery{
				DNS:  DNSDiscovery{Name: "picket.monitoring.svc.cluster.local", Type: "SRV", Port: 7946, Server: "10.96.0.10:53", Interval: Duration(30 * time.Second)},
				MDNS: MDNSDiscovery{Enabled: true, Service: "_picket._tcp"},
			},
			Profile: "wan", Server: false, Raft: Raft{Voters: 5, BootstrapExpect: 3}, TLS: tls,
			RetryJoinInterval: Duration(2 * time.Second),
			Tags:              map[string]string{"rack": "r1", "zone": "eu-1a"},
		},
		Collectors: Collectors{Interval: Duration(5 * time.Second), Disabled: []string{"swap", "uptime"}, HostRoot: "/host"},
		Checks: []Check{
			check("api", TypeHTTP, func(c *Check) {
				c.Placement = PlacementCluster
				c.Vantage = Vantage{Nodes: 3, Quorum: 2}
				c.Interval, c.Timeout = Duration(10*time.Second), Duration(5*time.Second)
				c.Thresholds = Thresholds{SuccessBeforePassing: 2, FailuresBeforeWarning: 1, FailuresBeforeCritical: 3}
				c.Flap = Flap{Window: Duration(5 * time.Minute), MaxTransitions: 4}
				c.HTTP = &HTTPCheck{
					URL: "https://api.example.com/health", Method: "POST",
					Headers: map[string]string{"X-Probe": "picket", "Content-Type": "application/json"},
					Body:    `{"ping": true}`, ExpectStatus: []string{"200", "3xx"},
					ExpectBody: "ok $5 ${HOME} $x", ExpectBodyRegex: "^o+k$", FollowRedirects: false,
					TLS: TLSClient{CAFile: td + "/tls/ca.pem", ServerName: "api.example.com", WarningDays: 30, CriticalDays: 0},
				}
			}),
			check("db", TypeTCP, func(c *Check) {
				c.Interval, c.Timeout = Duration(2*time.Second), Duration(2*time.Second)
				c.TCP = &TCPCheck{Address: "db.internal:5432", Send: "PING\n", Expect: "PONG"}
			}),
			check("resolver", TypeDNS, func(c *Check) {
				c.DNS = &DNSCheck{Name: "example.com.", Type: "AAAA", Server: "[::1]:53", Protocol: "tcp", ExpectRcode: "NXDOMAIN", ExpectAnswers: []string{"2001:db8::1"}}
			}),
			check("cert", TypeTLS, func(c *Check) {
				c.Placement = PlacementCluster
				c.TLS = &TLSCheck{Address: "example.com:443", ServerName: "example.com", CAFile: td + "/tls/ca.pem", InsecureSkipVerify: true, WarningDays: 20, CriticalDays: 10}
			}),
			check("backend", TypeGRPC, func(c *Check) {
				c.Timeout = Duration(time.Second)
				c.GRPC = &GRPCCheck{Address: "127.0.0.1:50051", Service: "picket.v1", TLS: true, CAFile: td + "/tls/ca.pem", ServerName: "backend"}
			}),
			check("disk", TypeExec, func(c *Check) {
				c.Interval = Duration(time.Minute)
				c.Exec = &ExecCheck{Command: []string{"./check_disk.sh", "-w", "20%"}, Env: map[string]string{"LC_ALL": "C"}, Dir: td + "/scripts"}
			}),
		},
		Exporters: Exporters{
			Prometheus: Prometheus{Enabled: false},
			OTLP: OTLP{
				Endpoint: "otel-collector:4318", Protocol: "http", Insecure: true,
				Headers:  map[string]Secret{"authorization": "Bearer abc"},
				Interval: Duration(time.Minute), Timeout: Duration(5 * time.Second), Logs: false, TLS: tls,
			},
		},
		Logs: Logs{
			Retention: Retention{MaxRecords: 5000, MaxBytes: 1 << 30, MaxAge: Duration(72 * time.Hour)},
			Spool:     Spool{MaxBytes: 10_000_000},
		},
	}
	got, err := Parse("testdata/valid-full.yaml", readFile(t, "testdata/valid-full.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decoded config differs.\ngot:\n%s\nwant:\n%s", got.Redacted(), want.Redacted())
	}
}

func TestAnchorsAndMerge(t *testing.T) {
	c, err := Parse("testdata/valid-anchors.yaml", readFile(t, "testdata/valid-anchors.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	a, b := c.Checks[0], c.Checks[1]
	if a.Interval.D() != 5*time.Second || a.Timeout.D() != 5*time.Second {
		t.Errorf("a: interval %s timeout %s, want 5s and 5s (merged interval, timeout follows)", a.Interval, a.Timeout)
	}
	if b.Interval.D() != time.Minute || b.Timeout.D() != 10*time.Second {
		t.Errorf("b: interval %s timeout %s, want 1m (own key wins over the merge) and 10s", b.Interval, b.Timeout)
	}
	want := Thresholds{SuccessBeforePassing: 1, FailuresBeforeWarning: 1, FailuresBeforeCritical: 2}
	if a.Thresholds != want || b.Thresholds != want {
		t.Errorf("thresholds %+v and %+v, want %+v (merged onto the defaults)", a.Thresholds, b.Thresholds, want)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("min.yaml", []byte("cluster: {bind: 127.0.0.1:7946}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	want := Default()
	want.Cluster.Bind = "127.0.0.1:7946"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got:\n%s\nwant:\n%s", c.Redacted(), want.Redacted())
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"node_name", c.NodeName, host},
		{"data_dir", c.DataDir, DefaultDataDir()},
		{"log", c.Log, Log{Level: "info", Format: "text"}},
		{"http.listen", c.HTTP.Listen, "127.0.0.1:7948"},
		{"cluster.name", c.Cluster.Name, "picket"},
		{"cluster.rpc", c.Cluster.RPC, ""},
		{"RPCAddr", c.Cluster.RPCAddr(), "127.0.0.1:7947"},
		{"cluster.profile", c.Cluster.Profile, "lan"},
		{"cluster.server", c.Cluster.Server, true},
		{"cluster.raft", c.Cluster.Raft, Raft{Voters: 3, BootstrapExpect: 0}},
		{"BootstrapExpectOrDefault", c.Cluster.BootstrapExpectOrDefault(), 1},
		{"cluster.retry_join_interval", c.Cluster.RetryJoinInterval, Duration(5 * time.Second)},
		{"cluster.discovery", c.Cluster.Discovery, Discovery{
			DNS:  DNSDiscovery{Type: "A", Port: 7946, Interval: Duration(10 * time.Second)},
			MDNS: MDNSDiscovery{Service: "_picket._tcp"}}},
		{"collectors", c.Collectors, Collectors{Interval: Duration(15 * time.Second), HostRoot: "/"}},
		{"exporters", c.Exporters, Exporters{Prometheus: Prometheus{Enabled: true}, OTLP: OTLP{
			Protocol: "grpc", Interval: Duration(30 * time.Second), Timeout: Duration(10 * time.Second), Logs: true}}},
		{"logs", c.Logs, Logs{Retention: Retention{MaxRecords: 1000000, MaxBytes: 256 << 20, MaxAge: Duration(168 * time.Hour)}, Spool: Spool{MaxBytes: 64 << 20}}},
	}
	for _, ck := range checks {
		if !reflect.DeepEqual(ck.got, ck.want) {
			t.Errorf("%s = %#v, want %#v", ck.name, ck.got, ck.want)
		}
	}
	if names := CollectorNames(); !slices.Equal(names, []string{"cpu", "load", "memory", "swap", "filesystem", "disk", "network", "uptime"}) {
		t.Errorf("CollectorNames() = %v", names)
	}
}

func TestCheckDefaults(t *testing.T) {
	text := `cluster: {bind: 127.0.0.1:7946}
checks:
  - {name: h, type: http, http: {url: "http://127.0.0.1/"}}
  - {name: d, type: dns, dns: {name: localhost}}
  - {name: t, type: tls, tls: {address: "127.0.0.1:443"}}
  - {name: g, type: grpc, grpc: {address: "127.0.0.1:1"}}
  - {name: short, type: tcp, interval: 5s, tcp: {address: "127.0.0.1:1"}}
  - {name: short-null, type: tcp, interval: 5s, timeout: , tcp: {address: "127.0.0.1:1"}}
  - {name: short-given, type: tcp, interval: 5s, timeout: 2s, tcp: {address: "127.0.0.1:1"}}
  - {name: long, type: tcp, interval: 1m, tcp: {address: "127.0.0.1:1"}}
  - {name: h2, type: http, http: }
`
	_, err := Parse("c.yaml", []byte(text), env(nil))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "checks[8].http.url" || errs[0].Line != 11 {
		t.Fatalf("want one error for checks[8].http.url on line 11 (an empty http: block gets defaults), got:\n%v", err)
	}
	text = strings.Replace(text, "http: }", `http: {url: "http://127.0.0.1/"}}`, 1)
	c, err := Parse("c.yaml", []byte(text), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	h := c.Checks[0]
	wantCommon := NewCheck("h", TypeHTTP)
	wantCommon.HTTP.URL = "http://127.0.0.1/"
	if !reflect.DeepEqual(h, wantCommon) {
		t.Errorf("http check %+v\nwant %+v", h, wantCommon)
	}
	if h.Placement != "local" || h.Interval.D() != 30*time.Second || h.Timeout.D() != 10*time.Second ||
		h.Thresholds != (Thresholds{1, 1, 3}) || h.Flap != (Flap{Duration(10 * time.Minute), 5}) || h.Vantage != (Vantage{1, 1}) {
		t.Errorf("common defaults wrong: %+v", h)
	}
	if hh := h.HTTP; hh.Method != "GET" || !slices.Equal(hh.ExpectStatus, []string{"2xx"}) || !hh.FollowRedirects ||
		hh.TLS.WarningDays != 14 || hh.TLS.CriticalDays != 7 {
		t.Errorf("http defaults wrong: %+v", hh)
	}
	if d := c.Checks[1].DNS; !reflect.DeepEqual(*d, DNSCheck{Name: "localhost", Type: "A", Protocol: "udp", ExpectRcode: "NOERROR"}) {
		t.Errorf("dns defaults wrong: %+v", d)
	}
	if tl := c.Checks[2].TLS; tl.WarningDays != 14 || tl.CriticalDays != 7 {
		t.Errorf("tls defaults wrong: %+v", tl)
	}
	timeouts := map[string]time.Duration{"short": 5 * time.Second, "short-null": 5 * time.Second, "short-given": 2 * time.Second, "long": 10 * time.Second}
	for _, ck := range c.Checks {
		if want, ok := timeouts[ck.Name]; ok && ck.Timeout.D() != want {
			t.Errorf("check %s: timeout %s, want %s", ck.Name, ck.Timeout, want)
		}
	}
}

func TestClusterHelpers(t *testing.T) {
	tests := []struct {
		name   string
		c      Cluster
		rpc    string
		expect int
	}{
		{"lone node", Cluster{Bind: "0.0.0.0:7946", Raft: Raft{Voters: 3}}, "0.0.0.0:7947", 1},
		{"seeds", Cluster{Bind: "10.0.0.1:8000", Join: []string{"10.0.0.2:7946"}, Raft: Raft{Voters: 3}}, "10.0.0.1:7947", 3},
		{"dns discovery", Cluster{Bind: "[::1]:7946", Discovery: Discovery{DNS: DNSDiscovery{Name: "x"}}, Raft: Raft{Voters: 5}}, "[::1]:7947", 5},
		{"mdns", Cluster{Discovery: Discovery{MDNS: MDNSDiscovery{Enabled: true}}, Raft: Raft{Voters: 3}}, ":7947", 3},
		{"explicit", Cluster{RPC: "127.0.0.1:9000", Join: []string{"a:1"}, Raft: Raft{Voters: 3, BootstrapExpect: 2}}, "127.0.0.1:9000", 2},
	}
	for _, tt := range tests {
		if got := tt.c.RPCAddr(); got != tt.rpc {
			t.Errorf("%s: RPCAddr() = %q, want %q", tt.name, got, tt.rpc)
		}
		if got := tt.c.BootstrapExpectOrDefault(); got != tt.expect {
			t.Errorf("%s: BootstrapExpectOrDefault() = %d, want %d", tt.name, got, tt.expect)
		}
	}
	key, err := Cluster{Key: testKey}.KeyBytes()
	if err != nil || string(key) != "0123456789abcdef" {
		t.Errorf("KeyBytes() = %q, %v", key, err)
	}
	if key, err := (Cluster{}).KeyBytes(); key != nil || err != nil {
		t.Errorf("KeyBytes() of no key = %q, %v; want nil, nil", key, err)
	}
}

func TestDefaultDataDir(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	got := DefaultDataDir()
	if os.Geteuid() == 0 && writable("/var/lib") {
		if got != "/var/lib/picket" {
			t.Errorf("as root: %q, want /var/lib/picket", got)
		}
		return
	}
	if want := filepath.Join(state, "picket"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRelativePaths(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"ca.pem", "cert.pem", "key.pem"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	text := `data_dir: data
http:
  tls: {ca_file: ca.pem, cert_file: cert.pem, key_file: ./key.pem}
cluster:
  bind: 127.0.0.1:7946
  tls: {ca_file: ca.pem, cert_file: cert.pem, key_file: key.pem}
exporters:
  otlp: {tls: {ca_file: ca.pem, cert_file: /abs/cert.pem, key_file: key.pem}}
checks:
  - {name: h, type: http, http: {url: "http://127.0.0.1/", tls: {ca_file: ca.pem}}}
  - {name: t, type: tls, tls: {address: "127.0.0.1:1", ca_file: ../ca.pem}}
  - {name: g, type: grpc, grpc: {address: "127.0.0.1:1", ca_file: ca.pem}}
  - {name: e, type: exec, exec: {command: [./x.sh], dir: scripts}}
`
	// The absolute otlp cert_file does not exist: exactly that error proves the others resolved.
	_, err := Parse(filepath.Join(dir, "picket.yaml"), []byte(text), env(nil))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != "exporters.otlp.tls.cert_file" {
		t.Fatalf("want only the missing /abs/cert.pem, got:\n%v", err)
	}
	text = strings.Replace(text, "/abs/cert.pem", filepath.Join(dir, "cert.pem"), 1)
	c, err := Parse(filepath.Join(dir, "picket.yaml"), []byte(text), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	j := func(p string) string { return filepath.Join(dir, p) }
	got := []string{
		c.DataDir, c.HTTP.TLS.CAFile, c.HTTP.TLS.CertFile, c.HTTP.TLS.KeyFile,
		c.Cluster.TLS.CAFile, c.Exporters.OTLP.TLS.CertFile, c.Exporters.OTLP.TLS.KeyFile,
		c.Checks[0].HTTP.TLS.CAFile, c.Checks[1].TLS.CAFile, c.Checks[2].GRPC.CAFile, c.Checks[3].Exec.Dir,
		c.Checks[3].Exec.Command[0],
	}
	want := []string{
		j("data"), j("ca.pem"), j("cert.pem"), j("key.pem"),
		j("ca.pem"), j("cert.pem"), j("key.pem"),
		j("ca.pem"), filepath.Join(filepath.Dir(dir), "ca.pem"), j("ca.pem"), j("scripts"),
		"./x.sh",
	}
	if !slices.Equal(got, want) {
		t.Errorf("paths:\n got %q\nwant %q", got, want)
	}

	// A relative file name resolves against its folder, made absolute.
	c, err = Parse("testdata/valid-full.yaml", readFile(t, "testdata/valid-full.yaml"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(absTestdata(t), "state"); c.DataDir != want {
		t.Errorf("data_dir %q, want %q", c.DataDir, want)
	}
}

func TestEnvExpansion(t *testing.T) {
	vars := map[string]string{"A": "1", "EMPTY": "", "KEY": testKey, "ML": "x\ny"}
	tests := []struct {
		in, want string
		errs     []string // messages expected, by line
	}{
		{in: "a: ${A}", want: "a: 1"},
		{in: "a: ${UNSET}", want: "a: "},
		{in: "a: ${UNSET:-d e}", want: "a: d e"},
		{in: "a: ${EMPTY:-d}", want: "a: d"},
		{in: "a: ${A:-d}", want: "a: 1"},
		{in: "a: ${UNSET:-}", want: "a: "},
		{in: "a: $$ $${A} $A a$ $", want: "a: $ ${A} $A a$ $"},
		{in: "a: $$$${A}", want: "a: $${A}"},
		{in: "k: ${KEY}${A}", want: "k: " + testKey + "1"},
		{in: "a: ${A:-${B}}", want: "a: 1}"},
		{in: "x: 1\na: ${ML}", errs: []string{"2: environment variable ML holds a line break"}},
		{in: "a: ${", errs: []string{`1: "${" is not followed by a variable name`}},
		{in: "x: 1\n\na: ${A\nb: 2", errs: []string{"3: ${A has no closing }"}},
		{in: "a: ${1A}\nb: ${A?}\nc: ${A:-x\n", errs: []string{
			`1: "${" is not followed by a variable name`, `2: ${A is followed by '?'`, "3: ${A:- has no closing } on its line"}},
	}
	for _, tt := range tests {
		out, errs := expandEnv("f", []byte(tt.in), env(vars))
		if len(tt.errs) == 0 {
			if len(errs) > 0 || string(out) != tt.want {
				t.Errorf("expand(%q) = %q, %v; want %q", tt.in, out, errs, tt.want)
			}
			continue
		}
		if len(errs) != len(tt.errs) {
			t.Errorf("expand(%q): got errors %v, want %d", tt.in, errs, len(tt.errs))
			continue
		}
		for i, e := range errs {
			if got := strings.TrimPrefix(e.Error(), "f:"); !strings.HasPrefix(got, tt.errs[i]) {
				t.Errorf("expand(%q): error %q, want prefix %q", tt.in, got, tt.errs[i])
			}
		}
	}
	if out, errs := expandEnv("f", []byte("a: ${A}"), nil); len(errs) > 0 || string(out) != "a: " {
		t.Errorf("nil lookup: %q, %v; want every variable unset", out, errs)
	}
}

func TestParseEnv(t *testing.T) {
	text := "node_name: ${NAME:-fallback}\ncluster:\n  bind: ${BIND:-0.0.0.0:7946}\n  key: ${KEY}\n  raft: {voters: ${VOTERS:-3}}\n"
	c, err := Parse("e.yaml", []byte(text), env(map[string]string{"KEY": testKey, "VOTERS": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName != "fallback" || c.Cluster.Bind != "0.0.0.0:7946" || c.Cluster.Key.Value() != testKey || c.Cluster.Raft.Voters != 5 {
		t.Errorf("got node %q bind %q voters %d", c.NodeName, c.Cluster.Bind, c.Cluster.Raft.Voters)
	}
	// An unset variable with no default leaves the key empty, which keeps its default.
	c, err = Parse("e.yaml", []byte("node_name: ${NAME}\ncluster: {bind: 127.0.0.1:7946}\n"), env(nil))
	if host, _ := os.Hostname(); err != nil || c.NodeName != host {
		t.Errorf("node_name %q, %v; want the host name %q", c.NodeName, err, host)
	}
}

func TestEmbedded(t *testing.T) {
	c, err := Embedded(env(nil))
	if err != nil {
		t.Fatalf("embedded default does not load:\n%v", err)
	}
	host, _ := os.Hostname()
	if c.NodeName != host || c.DataDir != DefaultDataDir() {
		t.Errorf("node %q data_dir %q, want %q and %q", c.NodeName, c.DataDir, host, DefaultDataDir())
	}
	if c.HTTP.Listen != "127.0.0.1:7948" || c.Cluster.Bind != "127.0.0.1:7946" || c.Cluster.RPCAddr() != "127.0.0.1:7947" {
		t.Errorf("addresses %q %q %q", c.HTTP.Listen, c.Cluster.Bind, c.Cluster.RPCAddr())
	}
	if c.Cluster.Raft != (Raft{Voters: 1, BootstrapExpect: 1}) || c.Cluster.Key != "" || c.Cluster.Insecure {
		t.Errorf("raft %+v key set %v insecure %v", c.Cluster.Raft, c.Cluster.Key != "", c.Cluster.Insecure)
	}
	if len(c.Collectors.Disabled) != 0 || !c.Exporters.Prometheus.Enabled {
		t.Errorf("collectors disabled %v, prometheus %v", c.Collectors.Disabled, c.Exporters.Prometheus.Enabled)
	}
	want := NewCheck("self", TypeHTTP)
	want.Interval, want.Timeout = Duration(10*time.Second), Duration(10*time.Second)
	want.HTTP.URL = "http://127.0.0.1:7948/healthz"
	if len(c.Checks) != 1 || !reflect.DeepEqual(c.Checks[0], want) {
		t.Errorf("checks %+v, want one: %+v", c.Checks, want)
	}
	c, err = Embedded(env(map[string]string{"PICKET_NODE_NAME": "n9", "PICKET_DATA_DIR": "/tmp/p", "PICKET_LOG_LEVEL": "debug", "PICKET_LOG_FORMAT": "json"}))
	if err != nil || c.NodeName != "n9" || c.DataDir != "/tmp/p" || c.Log != (Log{Level: "debug", Format: "json"}) {
		t.Errorf("overrides: %v %+v", err, c)
	}
}

// picketConfigs lists the picket config files at the top of the repository's configs/.
func picketConfigs(t *testing.T) (picket, other []string) {
	t.Helper()
	dir := filepath.Join("..", "..", "configs")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	notPicket := map[string]bool{"docker-compose.yaml": true, "prometheus.yml": true, "otelcol.yaml": true}
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		if notPicket[e.Name()] {
			other = append(other, filepath.Join(dir, e.Name()))
		} else {
			picket = append(picket, filepath.Join(dir, e.Name()))
		}
	}
	return picket, other
}

// TestRepoConfigs loads every picket config in configs/ (with a gossip key in the
// environment, as a cluster member needs one) and checks that the other YAML files there
// at least parse.
func TestRepoConfigs(t *testing.T) {
	picket, other := picketConfigs(t)
	if !slices.ContainsFunc(picket, func(p string) bool { return strings.HasSuffix(p, "picket.example.yaml") }) {
		t.Fatalf("configs/picket.example.yaml not found among %v", picket)
	}
	for _, f := range picket {
		if _, err := Parse(f, readFile(t, f), env(map[string]string{"PICKET_GOSSIP_KEY": testKey})); err != nil {
			t.Errorf("%s does not load:\n%v", f, err)
		}
	}
	for _, f := range other {
		var v any
		if err := yaml.Unmarshal(readFile(t, f), &v); err != nil {
			t.Errorf("%s is not valid YAML: %v", f, err)
		}
	}
	// The example and the single-node config must load as written, with nothing set.
	for _, f := range []string{"picket.example.yaml", "single-node.yaml"} {
		p := filepath.Join("..", "..", "configs", f)
		if _, err := Parse(p, readFile(t, p), env(nil)); err != nil {
			t.Errorf("%s does not load with an empty environment:\n%v", f, err)
		}
	}
}

// schemaPaths lists every key path of the schema type t under prefix, with list items
// written as [] and every check type's block included.
func schemaPaths(t reflect.Type, prefix string, out *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		p := joinPath(prefix, name)
		*out = append(*out, p)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			schemaPaths(ft.Elem(), p+"[]", out)
			continue
		}
		if ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(reflect.TypeFor[interface{ UnmarshalText([]byte) error }]()) {
			schemaPaths(ft, p, out)
		}
	}
}

// TestExampleDocumentsEveryKey checks that configs/picket.example.yaml writes out every
// key of the schema (each check block at least once) with a comment on the key's line or
// on the line just above it.
func TestExampleDocumentsEveryKey(t *testing.T) {
	path := filepath.Join("..", "..", "configs", "picket.example.yaml")
	data := readFile(t, path)
	_, lines, errs := decodeConfig(path, data, env(nil))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	first := map[string]int{}
	for p, l := range lines {
		norm := indexRE(p)
		if old, ok := first[norm]; !ok || l < old {
			first[norm] = l
		}
	}
	text := strings.Split(string(data), "\n")
	var want []string
	schemaPaths(reflect.TypeFor[Config](), "", &want)
	for _, p := range want {
		l, ok := first[p]
		if !ok {
			t.Errorf("%s is not in the example", p)
			continue
		}
		here := text[l-1]
		above := ""
		if l >= 2 {
			above = strings.TrimSpace(text[l-2])
		}
		if !strings.Contains(here, "#") && !strings.HasPrefix(above, "#") {
			t.Errorf("%s (line %d) has no comment on its line or the line above", p, l)
		}
	}
}

// indexRE turns checks[3].http.url into checks[].http.url.
func indexRE(p string) string {
	var b strings.Builder
	skip := false
	for _, r := range p {
		switch {
		case r == '[':
			skip = true
			b.WriteString("[]")
		case r == ']':
			skip = false
		case !skip:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// restoreSecrets copies the secrets of from into c, so configs can be compared apart from
// redaction.
func restoreSecrets(c, from *Config) {
	c.HTTP.Token = from.HTTP.Token
	c.Cluster.Key = from.Cluster.Key
	for k := range c.Exporters.OTLP.Headers {
		c.Exporters.OTLP.Headers[k] = from.Exporters.OTLP.Headers[k]
	}
}

// roundTrip checks that c.Redacted() hides the secrets and parses back to c.
func roundTrip(t testing.TB, c *Config) {
	t.Helper()
	text := c.Redacted()
	for _, s := range []Secret{c.HTTP.Token, c.Cluster.Key} {
		if len(s) > 0 && strings.Contains(text, s.Value()) {
			t.Fatalf("Redacted() shows a secret:\n%s", text)
		}
	}
	back, _, errs := decodeConfig("redacted.yaml", []byte(text), nil)
	if len(errs) > 0 {
		t.Fatalf("Redacted() output does not decode: %v\n%s", errs, text)
	}
	back.complete("")
	for k, v := range back.Exporters.OTLP.Headers {
		if v != "" && v != redacted {
			t.Errorf("header %s printed as %q, want %q", k, v, redacted)
		}
	}
	restoreSecrets(back, c)
	if !reflect.DeepEqual(back, c) {
		t.Fatalf("Redacted() output parses to another config.\nredacted:\n%s\nparsed back:\n%s", text, back.Redacted())
	}
	if err := back.Validate(); err != nil {
		t.Fatalf("parsed back config does not validate: %v", err)
	}
}

func TestRedactedRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid-*.yaml")
	picket, _ := picketConfigs(t)
	files = append(files, picket...)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Parse(f, readFile(t, f), env(map[string]string{"PICKET_GOSSIP_KEY": testKey, "PICKET_TOKEN": "tok-123"}))
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c)
		})
	}
	c, err := Embedded(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c)

	full, _ := Parse("testdata/valid-full.yaml", readFile(t, "testdata/valid-full.yaml"), env(nil))
	text := full.Redacted()
	for _, want := range []string{"token: <secret>", "key: <secret>", "authorization: <secret>"} {
		if !strings.Contains(text, want) {
			t.Errorf("Redacted() lacks %q:\n%s", want, text)
		}
	}
}

func TestHash(t *testing.T) {
	load := func(text string) *Config {
		t.Helper()
		c, err := Parse("h.yaml", []byte(text), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	const (
		cl    = "cluster: {bind: 127.0.0.1:7946}\n"
		a     = "  - {name: a, type: tcp, placement: cluster, tcp: {address: \"127.0.0.1:1\"}}\n"
		b     = "  - {name: b, type: tcp, placement: cluster, tcp: {address: \"127.0.0.1:2\"}}\n"
		b2    = "  - {name: b, type: tcp, placement: cluster, tcp: {address: \"127.0.0.1:4\"}}\n"
		local = "  - {name: l, type: tcp, tcp: {address: \"127.0.0.1:3\"}}\n"
	)
	base := load(cl + "checks:\n" + a + b).Hash()
	if len(base) != 16 {
		t.Errorf("hash %q, want 16 hex digits", base)
	}
	same := []string{
		cl + "checks:\n" + b + a,
		cl + "checks:\n" + a + local + b,
		cl + "http: {listen: 127.0.0.1:9999}\nnode_name: other\ncollectors: {interval: 1m}\nchecks:\n" + a + b,
	}
	for _, s := range same {
		if load(s).Hash() != base {
			t.Errorf("hash changed for a change that members need not share:\n%s", s)
		}
	}
	differ := []string{
		cl + "checks:\n" + a,
		cl + "checks:\n" + a + b2,
		cl + "checks:\n" + a + b + "logs: {retention: {max_age: 1h}}\n",
		"cluster: {bind: 127.0.0.1:7946, raft: {voters: 5}}\nchecks:\n" + a + b,
		"cluster: {bind: 127.0.0.1:7946, name: other}\nchecks:\n" + a + b,
	}
	for _, s := range differ {
		if load(s).Hash() == base {
			t.Errorf("hash unchanged for a cluster-wide change:\n%s", s)
		}
	}
}

func TestRestartRequired(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   []string
	}{
		{"nothing", func(*Config) {}, nil},
		{"reloadable", func(c *Config) {
			c.Log.Level = "debug"
			c.HTTP.Token = "new"
			c.Cluster.Join = []string{"10.0.0.9:7946"}
			c.Cluster.Discovery.DNS.Name = "picket.svc"
			c.Cluster.Tags = map[string]string{"a": "b"}
			c.Collectors.Interval = Duration(time.Minute)
			c.Checks = append(c.Checks, NewCheck("x", TypeTCP))
		}, nil},
		{"node", func(c *Config) { c.NodeName = "other"; c.DataDir = "/elsewhere" }, []string{"node_name", "data_dir"}},
		{"http", func(c *Config) { c.HTTP.Listen = ":1"; c.HTTP.TLS.CertFile = "c" }, []string{"http.listen", "http.tls.cert_file"}},
		{"cluster", func(c *Config) {
			c.Cluster.Key = "k"
			c.Cluster.Raft.Voters = 5
			c.Cluster.RetryJoinInterval = Duration(time.Second)
		}, []string{"cluster.key", "cluster.raft.voters", "cluster.retry_join_interval"}},
		{"exporters and logs", func(c *Config) {
			c.Exporters.OTLP.Headers = map[string]Secret{"a": "b"}
			c.Exporters.Prometheus.Enabled = false
			c.Logs.Spool.MaxBytes = 1
		}, []string{"exporters.prometheus.enabled", "exporters.otlp.headers", "logs.spool.max_bytes"}},
	}
	for _, tt := range tests {
		old, nw := Default(), Default()
		tt.change(nw)
		if got := RestartRequired(old, nw); !slices.Equal(got, tt.want) {
			t.Errorf("%s: RestartRequired = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestLimits checks that a file with very many errors, or a small file of aliases that
// expands to millions of values, ends quickly with a bounded error list.
func TestLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("cluster: {bind: 127.0.0.1:7946}\n")
	for i := range 150 {
		b.WriteString("unknown_" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + "_" + strings.Repeat("y", i/26) + ": 1\n")
	}
	_, err := Parse("many.yaml", []byte(b.String()), nil)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != maxErrors {
		t.Fatalf("got %d errors, want %d", len(errs), maxErrors)
	}
	if last := errs[len(errs)-1]; last.Msg != "more than 99 errors; fix these and try again" {
		t.Errorf("last error %q, want the note that there are more", last)
	}

	b.Reset()
	b.WriteString("x-0: &l0 {interval: 1s}\n")
	for level := 1; level <= 6; level++ {
		prev := "*l" + string(rune('0'+level-1))
		b.WriteString("x-" + string(rune('0'+level)) + ": &l" + string(rune('0'+level)) + " {<<: [" +
			strings.TrimSuffix(strings.Repeat(prev+", ", 10), ", ") + "]}\n")
	}
	b.WriteString("cluster: {bind: 127.0.0.1:7946}\ncollectors:\n  <<: *l6\n")
	start := time.Now()
	_, err = Parse("bomb.yaml", []byte(b.String()), nil)
	if err == nil || !strings.Contains(err.Error(), "the document is too large") {
		t.Errorf("alias bomb: got %v, want a too-large error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("alias bomb took %s", d)
	}
}

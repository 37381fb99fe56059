package checks

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/picket-dev/picket/internal/config"
)

func dnsCheck(d config.DNSCheck) *config.Check {
	return &config.Check{Name: "resolver", Type: config.TypeDNS, DNS: &d}
}

// testZone answers the queries of the DNS tests.
func testZone(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	q := req.Question[0]
	switch {
	case q.Name == "a.test." && q.Qtype == dns.TypeA:
		for _, ip := range []string{"127.0.0.1", "127.0.0.2"} {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
		}
	case q.Name == "mx.test." && q.Qtype == dns.TypeMX:
		m.Answer = append(m.Answer, &dns.MX{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 60}, Preference: 10, Mx: "mail.test."})
	case q.Name == "big.test." && q.Qtype == dns.TypeTXT:
		for i := range 40 { // far more than 512 bytes: truncated over UDP
			m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
				Txt: []string{fmt.Sprintf("record number %02d with some padding text", i)}})
		}
	case q.Name == "a.test." || q.Name == "mx.test.":
	default:
		m.Rcode = dns.RcodeNameError
	}
	if w.LocalAddr().Network() == "udp" {
		m.Truncate(dns.MinMsgSize)
	}
	_ = w.WriteMsg(m)
}

// serveDNS starts miekg/dns servers on one loopback port over UDP and TCP.
func serveDNS(t testing.TB) string {
	t.Helper()
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 { // the TCP port of a free UDP port may be taken: try others
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("no loopback port free for both UDP and TCP: %v", err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: dns.HandlerFunc(testZone)}, {Listener: ln, Handler: dns.HandlerFunc(testZone)}} {
		started := make(chan struct{})
		done := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { done <- srv.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("dns server: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("dns server did not start in 5s")
		}
		t.Cleanup(func() {
			_ = srv.Shutdown()
			<-done
		})
	}
	return pc.LocalAddr().String()
}

func TestDNS(t *testing.T) {
	server := serveDNS(t)
	silent, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	closed, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.LocalAddr().String()
	closed.Close()

	tests := []struct {
		name    string
		check   config.DNSCheck
		timeout time.Duration
		status  Status
		reason  string
		output  []string
	}{
		{"A", config.DNSCheck{Name: "a.test", Server: server}, time.Second, Passing, ReasonNone, []string{"NOERROR", "2 answers", "127.0.0.1"}},
		{"A matches", config.DNSCheck{Name: "a.test.", Type: "a", Server: server, ExpectAnswers: []string{"127.0.0.2", "127.0.0.1"}}, time.Second, Passing, ReasonNone, nil},
		{"A over tcp", config.DNSCheck{Name: "a.test", Server: server, Protocol: "tcp", ExpectAnswers: []string{"127.0.0.1"}}, time.Second, Passing, ReasonNone, nil},
		{"answer missing", config.DNSCheck{Name: "a.test", Server: server, ExpectAnswers: []string{"127.0.0.1", "10.9.9.9"}}, time.Second, Critical, ReasonBody, []string{`no answer contains "10.9.9.9"`, "127.0.0.2"}},
		{"MX value", config.DNSCheck{Name: "mx.test", Type: "MX", Server: server, ExpectAnswers: []string{"10 mail.test."}}, time.Second, Passing, ReasonNone, nil},
		{"no answers", config.DNSCheck{Name: "a.test", Type: "AAAA", Server: server}, time.Second, Passing, ReasonNone, []string{"no answers"}},
		{"NXDOMAIN unexpected", config.DNSCheck{Name: "nope.test", Server: server}, time.Second, Critical, ReasonStatus, []string{"NXDOMAIN, want NOERROR"}},
		{"NXDOMAIN expected", config.DNSCheck{Name: "nope.test", Server: server, ExpectRcode: "nxdomain"}, time.Second, Passing, ReasonNone, []string{"NXDOMAIN"}},
		{"NOERROR unexpected", config.DNSCheck{Name: "a.test", Server: server, ExpectRcode: "NXDOMAIN"}, time.Second, Critical, ReasonStatus, []string{"NOERROR, want NXDOMAIN"}},
		{"truncated retried over tcp", config.DNSCheck{Name: "big.test", Type: "TXT", Server: server, ExpectAnswers: []string{"record number 39"}}, time.Second, Passing, ReasonNone, []string{"40 answers"}},
		{"no reply", config.DNSCheck{Name: "a.test", Server: silent.LocalAddr().String()}, 300 * time.Millisecond, Critical, ReasonTimeout, []string{"timeout after 300ms"}},
		{"port closed", config.DNSCheck{Name: "a.test", Server: closedAddr}, time.Second, Critical, ReasonConnect, []string{"refused"}},
		{"bad type", config.DNSCheck{Name: "a.test", Type: "AX", Server: server}, time.Second, Critical, ReasonConfig, []string{`type "AX"`}},
		{"bad rcode", config.DNSCheck{Name: "a.test", ExpectRcode: "FINE", Server: server}, time.Second, Critical, ReasonConfig, []string{`expect_rcode "FINE"`}},
		{"bad protocol", config.DNSCheck{Name: "a.test", Protocol: "quic", Server: server}, time.Second, Critical, ReasonConfig, []string{`protocol "quic"`}},
		{"bad name", config.DNSCheck{Name: "", Server: server}, time.Second, Critical, ReasonConfig, nil},
		{"bad server", config.DNSCheck{Name: "a.test", Server: "[::1"}, time.Second, Critical, ReasonConfig, []string{"host:port"}},
	}
	probe := Probers()[config.TypeDNS]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, dnsCheck(tt.check), tt.timeout)
			expect(t, r, tt.status, tt.reason, tt.output...)
			if r.Status == Passing && phaseNamesOf(r) != "connect,processing" {
				t.Errorf("phases %s, want connect,processing", phaseNamesOf(r))
			}
		})
	}
}

func TestDNSServer(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte("search example\nnameserver 127.0.0.53\nnameserver 127.0.0.1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		resolvConf, server, want string
		err                      bool
	}{
		{conf, "", "127.0.0.53:53", false},
		{conf, "127.0.0.1:5353", "127.0.0.1:5353", false},
		{conf, "127.0.0.1", "127.0.0.1:53", false},
		{conf, "::1", "[::1]:53", false},
		{conf, "localhost", "localhost:53", false},
		{empty, "", "", true},
		{filepath.Join(dir, "missing"), "", "", true},
	}
	for _, tt := range tests {
		got, err := dnsProber{resolvConf: tt.resolvConf}.server(tt.server)
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("server(%q) with %s = %q, %v; want %q, error %v", tt.server, filepath.Base(tt.resolvConf), got, err, tt.want, tt.err)
		}
	}
}

package cluster

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/picket-dev/picket/internal/config"
)

// testDNS is an authoritative miekg/dns server on loopback whose records tests change.
type testDNS struct {
	addr  string
	mu    sync.Mutex
	a     map[string][]string  // fqdn → IPv4 addresses
	srv   map[string][]dns.SRV // fqdn → SRV records (Hdr ignored)
	glue  bool                 // put the SRV targets' A records in the additional section
	asked int                  // queries answered
}

func startDNS(t *testing.T) *testDNS {
	t.Helper()
	d := &testDNS{a: map[string][]string{}, srv: map[string][]dns.SRV{}, glue: true}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(d.serve), NotifyStartedFunc: func() { close(started) }}
	done := make(chan error, 1)
	go func() { done <- s.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("DNS server: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Shutdown(); err != nil {
			t.Errorf("DNS server shutdown: %v", err)
		}
		<-done
	})
	return d
}

func (d *testDNS) setA(name string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.a[dns.Fqdn(name)] = ips
}

func (d *testDNS) setSRV(name string, recs ...dns.SRV) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.srv[dns.Fqdn(name)] = recs
}

func (d *testDNS) queries() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.asked
}

func (d *testDNS) serve(w dns.ResponseWriter, r *dns.Msg) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	resp := new(dns.Msg)
	resp.SetReply(r)
	resp.Authoritative = true
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	aRR := func(n, ip string) dns.RR {
		return &dns.A{Hdr: dns.RR_Header{Name: n, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(ip)}
	}
	_, hasA := d.a[name]
	_, hasSRV := d.srv[name]
	switch {
	case q.Qtype == dns.TypeA && hasA:
		for _, ip := range d.a[name] {
			resp.Answer = append(resp.Answer, aRR(name, ip))
		}
	case q.Qtype == dns.TypeSRV && hasSRV:
		for _, s := range d.srv[name] {
			rec := s
			rec.Hdr = dns.RR_Header{Name: name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1}
			resp.Answer = append(resp.Answer, &rec)
			if d.glue {
				for _, ip := range d.a[strings.ToLower(s.Target)] {
					resp.Extra = append(resp.Extra, aRR(s.Target, ip))
				}
			}
		}
	case !hasA && !hasSRV:
		resp.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(resp)
}

func TestDNSLookup(t *testing.T) {
	d := startDNS(t)
	d.setA("peers.test", "127.0.0.1", "127.0.0.2", "127.0.0.1")
	d.setA("n1.peers.test", "127.0.0.3")
	d.setSRV("_gossip._tcp.peers.test",
		dns.SRV{Target: "n1.peers.test.", Port: 9001},
		dns.SRV{Target: "n1.peers.test.", Port: 9002})
	d.setA("empty.test")

	tests := []struct {
		name    string
		cfg     config.DNSDiscovery
		glue    bool
		want    []string
		wantErr error
	}{
		{"A", config.DNSDiscovery{Name: "peers.test", Type: "A", Port: 7000}, true,
			[]string{"127.0.0.1:7000", "127.0.0.2:7000"}, nil},
		{"A with the default port", config.DNSDiscovery{Name: "peers.test"}, true,
			[]string{"127.0.0.1:7946", "127.0.0.2:7946"}, nil},
		{"SRV with glue", config.DNSDiscovery{Name: "_gossip._tcp.peers.test", Type: "srv"}, true,
			[]string{"127.0.0.3:9001", "127.0.0.3:9002"}, nil},
		{"SRV without glue", config.DNSDiscovery{Name: "_gossip._tcp.peers.test", Type: "SRV"}, false,
			[]string{"127.0.0.3:9001", "127.0.0.3:9002"}, nil},
		{"NXDOMAIN", config.DNSDiscovery{Name: "missing.test"}, true, nil, ErrNoRecords},
		{"no records", config.DNSDiscovery{Name: "empty.test"}, true, nil, ErrNoRecords},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d.mu.Lock()
			d.glue = tt.glue
			d.mu.Unlock()
			tt.cfg.Server = d.addr
			disc, err := newDNSDiscovery(tt.cfg, defaultGossipPort)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := disc.lookup(ctx)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("lookup = %v, %v; want %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("lookup = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestDNSPlanFromResolvConf(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.53\nnameserver ::1\noptions ndots:1\nsearch svc.test\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	disc, err := newDNSDiscovery(config.DNSDiscovery{Name: "picket"}, defaultGossipPort)
	if err != nil {
		t.Fatal(err)
	}
	disc.resolvConf = resolv
	servers, names, err := disc.plan()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.53:53", "[::1]:53"}; !slices.Equal(servers, want) {
		t.Errorf("servers = %v, want %v", servers, want)
	}
	if !slices.Contains(names, "picket.svc.test.") {
		t.Errorf("names = %v, want the search domain applied", names)
	}

	disc.server = "127.0.0.1:5353"
	if servers, names, _ := disc.plan(); !slices.Equal(servers, []string{"127.0.0.1:5353"}) || !slices.Equal(names, []string{"picket."}) {
		t.Errorf("with a server: %v %v, want it and the name alone", servers, names)
	}

	disc.server = ""
	disc.resolvConf = filepath.Join(t.TempDir(), "missing.conf")
	if _, _, err := disc.plan(); err == nil || !strings.Contains(err.Error(), "cluster.discovery.dns.server") {
		t.Errorf("plan without resolv.conf = %v, want a hint to set cluster.discovery.dns.server", err)
	}

	if d, err := newDNSDiscovery(config.DNSDiscovery{Name: "x", Server: "127.0.0.1"}, 1); err != nil || d.server != "127.0.0.1:53" {
		t.Errorf("server without a port = %+v, %v; want port 53", d, err)
	}
	if d, err := newDNSDiscovery(config.DNSDiscovery{}, 1); d != nil || err != nil {
		t.Errorf("no name = %+v, %v; want discovery off", d, err)
	}
}

func TestDNSDiscoveryJoins(t *testing.T) {
	for _, typ := range []string{"A", "SRV"} {
		for _, late := range []bool{false, true} {
			name := typ
			if late {
				name += " record added after start"
			}
			t.Run(name, func(t *testing.T) {
				d := startDNS(t)
				seed := startNode(t, "seed", testConfig(), Meta{})
				host, portStr, _ := net.SplitHostPort(seed.m.LocalNode().Address)
				port, _ := strconv.Atoi(portStr)
				publish := func() {
					if typ == "A" {
						d.setA("picket.test", host)
					} else {
						d.setA("seed.picket.test", host)
						d.setSRV("_picket._tcp.picket.test", dns.SRV{Target: "seed.picket.test.", Port: uint16(port)})
					}
				}
				if !late {
					publish()
				}

				c := testConfig()
				c.Discovery.DNS = config.DNSDiscovery{Name: "picket.test", Type: typ, Port: port, Server: d.addr,
					Interval: config.Duration(100 * time.Millisecond)}
				if typ == "SRV" {
					c.Discovery.DNS.Name = "_picket._tcp.picket.test"
				}
				agent := startNode(t, "agent", c, Meta{})
				if late {
					waitFor(t, 3*time.Second, "the agent to log that discovery found nothing", func() bool {
						return agent.logs.count("DNS discovery found no peers") > 0
					})
					asked := d.queries()
					waitFor(t, 3*time.Second, "three more discovery polls", func() bool { return d.queries() >= asked+3 })
					if n := agent.logs.count("DNS discovery found no peers"); n != 1 {
						t.Errorf("the same discovery failure was logged %d times, want once", n)
					}
					publish()
				}
				waitConverged(t, []*testNode{seed, agent}, 5*time.Second)
				if agent.logs.count("joined a peer found by DNS discovery") != 1 {
					t.Errorf("want one join through discovery, log:\n%s", agent.logs)
				}
			})
		}
	}
}

package cluster

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/picket-dev/picket/internal/config"
	"golang.org/x/sys/unix"
)

// The tests never use port 5353: each picks free ports. Where the kernel carries multicast
// on the loopback interface (Linux does, even without the MULTICAST flag, once a socket
// selects it with IP_MULTICAST_IF), agents share a group on lo; elsewhere the browsers are
// pointed at each responder's unicast address, which exercises the same answers (legacy
// unicast, RFC 6762 §6.7).

var (
	mcOnce sync.Once
	mcLo   *net.Interface // loopback interface that carries multicast; nil if none
	mcWhy  string
)

// loopbackMulticast returns the loopback interface when a multicast datagram sent on it
// reaches a socket that joined the group there, and nil (with the reason logged) when not.
// It uses only the standard library and x/sys, not the code under test.
func loopbackMulticast(t *testing.T) *net.Interface {
	t.Helper()
	mcOnce.Do(func() { mcLo, mcWhy = probeLoopbackMulticast() })
	if mcLo == nil {
		t.Logf("no multicast on loopback (%s): using unicast queries", mcWhy)
	}
	return mcLo
}

func probeLoopbackMulticast() (*net.Interface, string) {
	lo := loopbackInterface()
	if lo == nil {
		return nil, "no loopback interface"
	}
	group := net.IPv4(224, 0, 0, 251)
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, err.Error()
	}
	defer rx.Close()
	port := rx.LocalAddr().(*net.UDPAddr).Port
	rc, _ := rx.SyscallConn()
	if err := sockopt(rc, func(fd int) error {
		return unix.SetsockoptIPMreq(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
			&unix.IPMreq{Multiaddr: [4]byte(group.To4()), Interface: [4]byte{127, 0, 0, 1}})
	}); err != nil {
		return nil, "join: " + err.Error()
	}
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, err.Error()
	}
	defer tx.Close()
	tc, _ := tx.SyscallConn()
	if err := sockopt(tc, func(fd int) error {
		return unix.SetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1})
	}); err != nil {
		return nil, "IP_MULTICAST_IF: " + err.Error()
	}
	rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	for range 3 {
		if _, err := tx.WriteToUDP([]byte("probe"), &net.UDPAddr{IP: group, Port: port}); err != nil {
			return nil, "send: " + err.Error()
		}
		if n, _, err := rx.ReadFromUDP(buf); err == nil && string(buf[:n]) == "probe" {
			return lo, ""
		}
	}
	return nil, "nothing received"
}

func loopbackInterface() *net.Interface {
	ifis, _ := net.Interfaces()
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			return &ifi
		}
	}
	return nil
}

// freeUDPPort returns a UDP port that was free on every address a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// mdnsModes runs f once with agents on a multicast group on loopback (skipped where
// loopback carries no multicast) and once with browsers that ask each responder by unicast.
func mdnsModes(t *testing.T, f func(t *testing.T, multicast bool)) {
	for _, multicast := range []bool{true, false} {
		name := "unicast"
		if multicast {
			name = "multicast"
		}
		t.Run(name, func(t *testing.T) {
			if multicast && loopbackMulticast(t) == nil {
				t.Skip("the loopback interface does not carry multicast here")
			}
			f(t, multicast)
		})
	}
}

// mdnsTestNets returns the mDNS settings of n agents that should find each other on
// loopback: with multicast, one group with a free port on lo; else a port each and
// browsers that ask every port by unicast. Browses are short and frequent.
func mdnsTestNets(t *testing.T, n int, multicast bool) []mdnsNet {
	t.Helper()
	base := mdnsNet{window: 250 * time.Millisecond, first: 100 * time.Millisecond, interval: time.Second}
	nets := make([]mdnsNet, n)
	if lo := loopbackMulticast(t); multicast && lo != nil {
		base.group = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: freeUDPPort(t)}
		base.ifaces = func() ([]net.Interface, error) { return []net.Interface{*lo}, nil }
		for i := range nets {
			nets[i] = base
		}
		return nets
	}
	var targets []*net.UDPAddr
	for i := range nets {
		nets[i] = base
		port := freeUDPPort(t)
		nets[i].group = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: port}
		nets[i].ifaces = func() ([]net.Interface, error) { return nil, nil }
		targets = append(targets, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	}
	for i := range nets {
		nets[i].targets = targets
	}
	return nets
}

// newTestMDNS prepares mDNS discovery for an agent at self; it is not started.
func newTestMDNS(t *testing.T, cluster, node, self string, n mdnsNet, logs *syncBuffer) *mdnsDiscovery {
	t.Helper()
	d, err := newMDNS(config.MDNSDiscovery{Enabled: true}, cluster, node, self, n, nil, testLogger(logs))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startTestMDNS starts a responder; it is closed when the test ends.
func startTestMDNS(t *testing.T, cluster, node, self string, n mdnsNet, logs *syncBuffer) *mdnsDiscovery {
	t.Helper()
	d := newTestMDNS(t, cluster, node, self, n, logs)
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	return d
}

// startMDNSNode creates a Membership with mDNS discovery on n and runs it until the test
// ends (or stop), like startNode.
func startMDNSNode(t *testing.T, name string, cfg config.Cluster, n mdnsNet) *testNode {
	t.Helper()
	cfg.Discovery.MDNS.Enabled = true
	node := newNodeWith(t, Options{Config: cfg, NodeName: name, mdnsNet: n})
	runNode(t, node)
	return node
}

func TestMDNSAnswer(t *testing.T) {
	d := newTestMDNS(t, "prod", "web.1", "10.0.0.7:7946", mdnsNet{}, &syncBuffer{})
	if d.service != "_picket._tcp.local." || d.instance != `web\.1._picket._tcp.local.` || d.host != "picket-10-0-0-7.local." {
		t.Fatalf("names = %q %q %q", d.service, d.instance, d.host)
	}
	query := func(name string, qtype, qclass uint16) *dns.Msg {
		q := new(dns.Msg)
		q.Id = 4242
		q.Question = []dns.Question{{Name: name, Qtype: qtype, Qclass: qclass}}
		return q
	}

	// A browse: PTR in the answer, SRV, TXT and A in the additional section.
	resp, unicast := d.answer(query("_PICKET._tcp.local.", dns.TypePTR, dns.ClassINET), false)
	if resp == nil || unicast {
		t.Fatalf("PTR query: answer %v, unicast %v", resp, unicast)
	}
	if len(resp.Answer) != 1 || len(resp.Extra) != 3 || len(resp.Question) != 0 || resp.Id != 0 || !resp.Response || !resp.Authoritative {
		t.Fatalf("PTR answer:\n%v", resp)
	}
	ptr := resp.Answer[0].(*dns.PTR)
	srv := resp.Extra[0].(*dns.SRV)
	txt := resp.Extra[1].(*dns.TXT)
	a := resp.Extra[2].(*dns.A)
	if ptr.Ptr != d.instance || ptr.Hdr.Class != dns.ClassINET || ptr.Hdr.Ttl != mdnsTTL {
		t.Errorf("PTR = %v", ptr)
	}
	if srv.Port != 7946 || srv.Target != d.host || srv.Hdr.Class != dns.ClassINET|mdnsCacheFlush {
		t.Errorf("SRV = %v", srv)
	}
	if !slices.Equal(txt.Txt, []string{"v=1", "cluster=prod", "node=web.1"}) {
		t.Errorf("TXT = %v", txt.Txt)
	}
	if !a.A.Equal(net.IPv4(10, 0, 0, 7)) || a.Hdr.Name != d.host {
		t.Errorf("A = %v", a)
	}
	if _, err := resp.Pack(); err != nil {
		t.Errorf("pack: %v", err)
	}

	// Legacy unicast: ID and question repeated, TTL at most 10 s, no cache-flush bit.
	resp, _ = d.answer(query("_picket._tcp.local.", dns.TypePTR, dns.ClassINET), true)
	if resp.Id != 4242 || len(resp.Question) != 1 {
		t.Errorf("legacy answer header: id %d, %d questions", resp.Id, len(resp.Question))
	}
	for _, rr := range append(resp.Answer, resp.Extra...) {
		if rr.Header().Ttl != mdnsLegacyTTL || rr.Header().Class != dns.ClassINET {
			t.Errorf("legacy record %v: want TTL %d, class IN", rr, mdnsLegacyTTL)
		}
	}

	// QU bit: a unicast answer.
	if _, unicast := d.answer(query("_picket._tcp.local.", dns.TypePTR, dns.ClassINET|mdnsQU), false); !unicast {
		t.Error("QU query: want a unicast answer")
	}

	// Direct questions about the instance and the host.
	resp, _ = d.answer(query(d.instance, dns.TypeSRV, dns.ClassINET), false)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Rrtype != dns.TypeSRV || len(resp.Extra) != 1 || resp.Extra[0].Header().Rrtype != dns.TypeA {
		t.Errorf("SRV answer:\n%v", resp)
	}
	resp, _ = d.answer(query(d.host, dns.TypeA, dns.ClassINET), false)
	if len(resp.Answer) != 1 || len(resp.Extra) != 0 {
		t.Errorf("A answer:\n%v", resp)
	}
	resp, _ = d.answer(query(mdnsMetaQuery, dns.TypePTR, dns.ClassINET), false)
	if len(resp.Answer) != 1 || resp.Answer[0].(*dns.PTR).Ptr != d.service {
		t.Errorf("service enumeration answer:\n%v", resp)
	}

	// Nothing for other names, types or classes.
	for _, q := range []*dns.Msg{
		query("_http._tcp.local.", dns.TypePTR, dns.ClassINET),
		query("_picket._tcp.local.", dns.TypeA, dns.ClassINET),
		query("_picket._tcp.local.", dns.TypePTR, dns.ClassCHAOS),
		query("picket-10-0-0-7.local.", dns.TypeAAAA, dns.ClassINET),
	} {
		if resp, _ := d.answer(q, false); resp != nil {
			t.Errorf("answer to %v:\n%v", q.Question[0], resp)
		}
	}

	// Known-answer suppression: the querier holds the PTR with more than half its TTL.
	q := query("_picket._tcp.local.", dns.TypePTR, dns.ClassINET)
	q.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: d.service, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: mdnsTTL}, Ptr: d.instance}}
	if resp, _ := d.answer(q, false); resp != nil {
		t.Errorf("answer despite a known answer:\n%v", resp)
	}
	q.Answer[0].Header().Ttl = mdnsTTL/2 - 1
	if resp, _ := d.answer(q, false); resp == nil {
		t.Error("no answer although the known answer is about to expire")
	}
}

func TestMDNSParse(t *testing.T) {
	logs := &syncBuffer{}
	browser := newTestMDNS(t, "prod", "me", "10.0.0.1:7946", mdnsNet{}, logs)
	peer := newTestMDNS(t, "prod", "web-2", "10.0.0.2:8000", mdnsNet{}, logs)
	q := new(dns.Msg)
	q.SetQuestion(peer.service, dns.TypePTR)
	resp, _ := peer.answer(q, false)
	src := net.IPv4(192, 168, 1, 9)

	got, ttl, bye := browser.parse(resp, src)
	want := []mdnsPeer{{instance: "web-2._picket._tcp.local.", address: "10.0.0.2:8000", cluster: "prod"}}
	if !slices.Equal(got, want) || ttl != mdnsTTL || len(bye) != 0 {
		t.Errorf("parse = %+v, %d, %v; want %+v, %d", got, ttl, bye, want, mdnsTTL)
	}

	// Without the A record the sender's address is used.
	noA := resp.Copy()
	noA.Extra = noA.Extra[:2]
	if got, _, _ := browser.parse(noA, src); len(got) != 1 || got[0].address != "192.168.1.9:8000" {
		t.Errorf("parse without A = %+v", got)
	}
	// Without SRV there is no port: skipped.
	noSRV := resp.Copy()
	noSRV.Extra = noSRV.Extra[1:]
	if got, _, _ := browser.parse(noSRV, src); len(got) != 0 {
		t.Errorf("parse without SRV = %+v", got)
	}
	// A goodbye (TTL 0) is no peer.
	gb := resp.Copy()
	gb.Answer[0].Header().Ttl = 0
	if got, _, bye := browser.parse(gb, src); len(got) != 0 || !slices.Equal(bye, []string{peer.instance}) {
		t.Errorf("parse of a goodbye = %+v, %v", got, bye)
	}
	// Another service is not ours.
	other := newTestMDNS(t, "prod", "x", "10.0.0.3:7946", mdnsNet{}, logs)
	other.service = "_other._tcp.local."
	q.SetQuestion(other.service, dns.TypePTR)
	resp, _ = other.answer(q, true)
	if got, _, _ := browser.parse(resp, src); len(got) != 0 {
		t.Errorf("parse of another service = %+v", got)
	}
}

// TestMDNSCache: answers are kept for their TTL and listed as known answers while more
// than half of it is left; a goodbye removes them.
func TestMDNSCache(t *testing.T) {
	logs := &syncBuffer{}
	browser := newTestMDNS(t, "prod", "me", "10.0.0.1:7946", mdnsNet{}, logs)
	peer := newTestMDNS(t, "prod", "web-2", "10.0.0.2:8000", mdnsNet{}, logs)
	ask := new(dns.Msg)
	ask.SetQuestion(peer.service, dns.TypePTR)
	resp, _ := peer.answer(ask, false)
	src := net.IPv4(10, 0, 0, 2)

	browser.remember(resp, src)
	if got := browser.cached(); len(got) != 1 || got[0].address != "10.0.0.2:8000" {
		t.Fatalf("cached = %+v", got)
	}
	q := browser.query()
	if len(q.Answer) != 1 || q.Answer[0].(*dns.PTR).Ptr != peer.instance {
		t.Fatalf("query known answers = %v", q.Answer)
	}
	if again, _ := peer.answer(q, false); again != nil {
		t.Errorf("the peer answers a query that knows its answer:\n%v", again)
	}

	// Less than half the TTL left: no longer a known answer; expired: gone.
	browser.cacheMu.Lock()
	c := browser.cache["web-2._picket._tcp.local."]
	c.expires = time.Now().Add(time.Duration(c.ttl) * time.Second / 3)
	browser.cache["web-2._picket._tcp.local."] = c
	browser.cacheMu.Unlock()
	if q := browser.query(); len(q.Answer) != 0 {
		t.Errorf("known answers with a third of the TTL left = %v", q.Answer)
	}
	browser.cacheMu.Lock()
	c.expires = time.Now().Add(-time.Second)
	browser.cache["web-2._picket._tcp.local."] = c
	browser.cacheMu.Unlock()
	if got := browser.cached(); len(got) != 0 {
		t.Errorf("cached after expiry = %+v", got)
	}

	browser.remember(resp, src)
	bye := resp.Copy()
	for _, rr := range append(bye.Answer, bye.Extra...) {
		rr.Header().Ttl = 0
	}
	browser.remember(bye, src)
	if got := browser.cached(); len(got) != 0 {
		t.Errorf("cached after goodbye = %+v", got)
	}
}

func TestMDNSNames(t *testing.T) {
	if got := instanceLabel("a.b\\c"); got != `a\.b\\c` {
		t.Errorf("instanceLabel = %q", got)
	}
	if got := instanceLabel(strings.Repeat("x", 80)); len(got) != 63 {
		t.Errorf("instanceLabel of 80 bytes has %d", len(got))
	}
	d, err := newMDNS(config.MDNSDiscovery{Service: "_mon._udp"}, "c", "n", "[fd00::2]:7946", mdnsNet{}, nil, testLogger(&syncBuffer{}))
	if err != nil {
		t.Fatal(err)
	}
	if d.service != "_mon._udp.local." || d.host != "picket-fd00--2.local." || d.addrType() != dns.TypeAAAA {
		t.Errorf("IPv6 agent: %q %q %d", d.service, d.host, d.addrType())
	}
	for _, self := range []string{"0.0.0.0:7946", "host:7946", "10.0.0.1"} {
		if _, err := newMDNS(config.MDNSDiscovery{}, "c", "n", self, mdnsNet{}, nil, testLogger(&syncBuffer{})); err == nil {
			t.Errorf("newMDNS with advertise address %q succeeded", self)
		}
	}
	if _, err := newMDNS(config.MDNSDiscovery{Service: "_" + strings.Repeat("x", 70) + "._tcp"}, "c", "n", "10.0.0.1:1", mdnsNet{}, nil, testLogger(&syncBuffer{})); err == nil {
		t.Error("newMDNS with a 71-byte service label succeeded")
	}
}

// TestMDNSSchedule: at once, then after 1, 2, 4 and 8 s, then every 10 s.
func TestMDNSSchedule(t *testing.T) {
	n := mdnsNet{}.withDefaults()
	var got []time.Duration
	for p := n.first; len(got) < 7; p = nextPause(p, n.interval) {
		got = append(got, p)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second, 10 * time.Second}
	if !slices.Equal(got, want) {
		t.Errorf("pauses = %v, want %v", got, want)
	}
	if n.window != time.Second || n.group.String() != "224.0.0.251:5353" || len(n.targets) != 1 || n.targets[0] != n.group {
		t.Errorf("defaults = %+v", n)
	}
}

// TestMDNSLegacyUnicast asks a responder the way `dig @ADDR -p PORT` does: a query from
// an ephemeral port gets a unicast answer that repeats the ID and the question. Malformed
// packets and questions about other names get nothing, and neither does anything once the
// agent left.
func TestMDNSLegacyUnicast(t *testing.T) {
	logs := &syncBuffer{}
	port := freeUDPPort(t)
	n := mdnsNet{group: &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: port},
		ifaces: func() ([]net.Interface, error) { return nil, nil }}
	d := newTestMDNS(t, "prod", "n1", "127.0.0.1:7000", n, logs)
	var left atomic.Bool
	d.active = func() bool { return !left.Load() }
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.close)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	// Garbage first: dropped, and the responder keeps answering.
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{0xde, 0xad, 0xbe, 0xef, 1})
	c.Close()

	exchange := func(name string, timeout time.Duration) (*dns.Msg, error) {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypePTR)
		cl := &dns.Client{Net: "udp", Timeout: timeout}
		r, _, err := cl.Exchange(q, addr)
		if err == nil && r.Id != q.Id {
			return nil, errors.New("answer ID differs")
		}
		return r, err
	}
	r, err := exchange("_picket._tcp.local.", 5*time.Second)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if len(r.Question) != 1 || len(r.Answer) != 1 || len(r.Extra) != 3 {
		t.Fatalf("answer:\n%v", r)
	}
	if got, ttl, _ := d.parse(r, net.IPv4(127, 0, 0, 1)); len(got) != 1 || got[0].address != "127.0.0.1:7000" || got[0].cluster != "prod" || ttl != mdnsLegacyTTL {
		t.Errorf("parsed answer = %+v, TTL %d", got, ttl)
	}
	waitFor(t, 2*time.Second, "the malformed packet to be logged", func() bool {
		return logs.count("drop a malformed mDNS packet") == 1
	})

	var ne net.Error
	if r, err := exchange("_http._tcp.local.", 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("query for another service: %v, %v; want no answer", r, err)
	}
	left.Store(true)
	if r, err := exchange("_picket._tcp.local.", 300*time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("query after leaving: %v, %v; want no answer", r, err)
	}
}

// TestMDNSLookupUnicast browses three responders by unicast: it returns the one peer of
// its own cluster, not itself and not the agent of another cluster.
func TestMDNSLookupUnicast(t *testing.T) {
	logs := &syncBuffer{}
	nets := mdnsTestNets(t, 4, false)
	me := startTestMDNS(t, "prod", "n1", "127.0.0.1:7001", nets[0], logs)
	startTestMDNS(t, "prod", "n2", "127.0.0.1:7002", nets[1], logs)
	startTestMDNS(t, "staging", "s1", "127.0.0.1:7003", nets[2], logs)
	startTestMDNS(t, "prod", "lan", "192.0.2.9:7004", nets[3], logs)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	waitFor(t, 5*time.Second, "n1 to find n2 and log the agent of another cluster", func() bool {
		var err error
		if got, err = me.lookup(ctx); err != nil {
			t.Fatal(err)
		}
		return len(got) > 0 && logs.count("mDNS found an agent of another cluster") > 0 &&
			logs.count("at an address this agent cannot share") > 0
	})
	if !slices.Equal(got, []string{"127.0.0.1:7002"}) {
		t.Errorf("lookup = %v, want only n2", got)
	}

	// A cancelled lookup returns at once.
	cancel()
	began := time.Now()
	if _, err := me.lookup(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("lookup after cancel = %v", err)
	}
	if d := time.Since(began); d > 200*time.Millisecond {
		t.Errorf("cancelled lookup took %s", d)
	}
}

// TestMDNSMulticast runs two responders and a browser on one multicast group on the
// loopback interface: the answers are multicast from the mDNS port, every agent caches
// them, and Close multicasts a goodbye that takes the agent out of the caches.
func TestMDNSMulticast(t *testing.T) {
	if loopbackMulticast(t) == nil {
		t.Skip("the loopback interface does not carry multicast here")
	}
	logs := &syncBuffer{}
	n := mdnsTestNets(t, 1, true)[0]

	// A listener on the group sees what goes over the link.
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return sockopt(c, func(fd int) error {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", net.JoinHostPort("0.0.0.0", strconv.Itoa(n.group.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	listener := pc.(*net.UDPConn)
	rc, _ := listener.SyscallConn()
	if err := sockopt(rc, func(fd int) error {
		return unix.SetsockoptIPMreq(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP,
			&unix.IPMreq{Multiaddr: [4]byte(n.group.IP.To4()), Interface: [4]byte{127, 0, 0, 1}})
	}); err != nil {
		t.Fatal(err)
	}
	heard := make(chan *dns.Msg, 64)
	listenDone := make(chan struct{})
	go func() {
		defer close(listenDone)
		buf := make([]byte, mdnsMaxPacket)
		for {
			k, src, err := listener.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var m dns.Msg
			if m.Unpack(buf[:k]) == nil && m.Response && src.Port == n.group.Port {
				select {
				case heard <- &m:
				default:
				}
			}
		}
	}()
	defer func() { listener.Close(); <-listenDone }()

	start := time.Now()
	startTestMDNS(t, "prod", "n1", "127.0.0.1:7001", n, logs)
	n2 := startTestMDNS(t, "prod", "n2", "127.0.0.1:7002", n, logs)
	browser := startTestMDNS(t, "prod", "me", "127.0.0.1:7000", n, logs)

	var got []string
	waitFor(t, 10*time.Second, "the browser to find both responders", func() bool {
		got, _ = browser.lookup(context.Background())
		return slices.Equal(got, []string{"127.0.0.1:7001", "127.0.0.1:7002"})
	})
	t.Logf("found %v in %s", got, time.Since(start).Round(time.Millisecond))
	if got := n2.cached(); len(got) < 2 {
		t.Errorf("n2, which did not ask, caches %+v; want the others' multicast answers", got)
	}

	// Multicast answers: no question, full TTL, cache-flush bit on the unique records.
	deadline := time.After(5 * time.Second)
	for seen := 0; seen == 0; {
		select {
		case m := <-heard:
			if len(m.Answer) == 0 || m.Answer[0].Header().Ttl == 0 {
				continue
			}
			seen++
			if len(m.Question) != 0 || m.Answer[0].Header().Ttl != mdnsTTL || len(m.Extra) != 3 ||
				m.Extra[0].Header().Class != dns.ClassINET|mdnsCacheFlush {
				t.Errorf("multicast answer is not an mDNS answer:\n%v", m)
			}
		case <-deadline:
			t.Fatal("no multicast answer heard on the group")
		}
	}

	// Close says goodbye: the PTR with TTL 0; the browser forgets n2.
	n2.close()
	waitFor(t, 5*time.Second, "the goodbye of n2", func() bool {
		select {
		case m := <-heard:
			return len(m.Answer) == 1 && m.Answer[0].Header().Ttl == 0 && m.Answer[0].(*dns.PTR).Ptr == n2.instance
		default:
			return false
		}
	})
	waitFor(t, 5*time.Second, "the browser to forget n2", func() bool {
		got, _ = browser.lookup(context.Background())
		return slices.Equal(got, []string{"127.0.0.1:7001"})
	})
}

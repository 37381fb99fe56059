package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/picket-dev/picket/internal/config"
	"golang.org/x/sys/unix"
)

// mDNS discovery (cluster.discovery.mdns) is libcluster's multicast strategy done the
// standard way: DNS-SD (RFC 6763) over multicast DNS (RFC 6762), IPv4, on the local link.
//
// Each agent opens one UDP socket on port 5353, shared with other mDNS software of the
// machine (SO_REUSEADDR, SO_REUSEPORT), and joins 224.0.0.251 on its interfaces. On it
// the agent answers PTR queries for <service>.local. with <node>.<service>.local. plus,
// in the same message, the SRV (gossip port), TXT (v=1, cluster=NAME, node=NAME) and A
// (advertise address) records, by multicast to the link the query came from; queries
// with the QU bit get a unicast answer, and queries from another port than 5353 ("legacy
// unicast", RFC 6762 §6.7, the way `dig @224.0.0.251 -p 5353` asks) get a unicast answer
// that repeats the ID and the question. The answers the socket hears, to its own queries
// or anyone's, fill a small cache kept for the records' TTL (goodbyes remove entries).
// The browser multicasts a PTR query from that socket, listing the agents it already
// knows (known-answer suppression, §7.1), waits a short window for the answers and reads
// the cache; it asks at once, then after 1 s, 2 s, 4 s and 8 s, then every 10 s.
//
// An agent that advertises a loopback address announces and browses on the loopback
// interface only, so agents on one machine find each other without telling the network
// about an address it cannot use.
//
// Not implemented: probing and conflict resolution of names (§8, §9), unsolicited
// announcements (a goodbye goes out on Close), IPv6 (ff02::fb), random answer delays for
// shared records (§6), truncated multi-packet known-answer lists.

// mDNS defaults.
const (
	mdnsPort          = 5353
	mdnsWindow        = time.Second      // how long a browse waits for answers
	mdnsFirstPause    = time.Second      // pause after the first query; doubles up to mdnsInterval
	mdnsInterval      = 10 * time.Second // browse period once the start-up queries are done
	mdnsTTL           = 120              // seconds, every record in multicast and QU answers
	mdnsLegacyTTL     = 10               // seconds, cap for legacy unicast answers (RFC 6762 §6.7)
	mdnsMaxPacket     = 9000             // RFC 6762 §17
	mdnsKnownAnswers  = 1200             // bytes: a query with known answers stays below a usual MTU
	mdnsMaxCached     = 1024             // instances in the cache; more are ignored
	mdnsTXTVersion    = "1"              // the TXT format: v=1, cluster=NAME, node=NAME
	mdnsCacheFlush    = 1 << 15          // rrclass bit of unique records (RFC 6762 §10.2)
	mdnsQU            = 1 << 15          // qclass bit asking for a unicast answer (§5.4)
	mdnsMulticastGap  = time.Second      // at most one multicast answer per interface per gap (§6)
	mdnsServiceSuffix = ".local."
	mdnsMetaQuery     = "_services._dns-sd._udp.local." // DNS-SD service enumeration (RFC 6763 §9)
)

// errNoMulticastInterface is returned by a browse when no interface can send multicast.
var errNoMulticastInterface = errors.New("no network interface is up, multicast-capable and has an IPv4 address; mDNS works only on a local link")

// mdnsNet is where mDNS traffic goes and how fast. The zero value means the real thing
// (224.0.0.251:5353, the schedule above, the interfaces chosen by newMDNS); tests replace
// parts of it to run on loopback without port 5353.
type mdnsNet struct {
	group    *net.UDPAddr                    // multicast group; its port is the responder's UDP port
	targets  []*net.UDPAddr                  // where the browser sends queries; default: group
	ifaces   func() ([]net.Interface, error) // interfaces to join and send on
	window   time.Duration
	first    time.Duration
	interval time.Duration
}

func (n mdnsNet) withDefaults() mdnsNet {
	if n.group == nil {
		n.group = &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: mdnsPort}
	}
	if len(n.targets) == 0 {
		n.targets = []*net.UDPAddr{n.group}
	}
	if n.window <= 0 {
		n.window = mdnsWindow
	}
	if n.interval <= 0 {
		n.interval = mdnsInterval
	}
	if n.first <= 0 {
		n.first = min(mdnsFirstPause, n.interval)
	}
	return n
}

// multicastInterfaces returns the interfaces that are up, running and multicast-capable.
func multicastInterfaces() ([]net.Interface, error) {
	return interfaces(net.FlagUp | net.FlagRunning | net.FlagMulticast)
}

// loopbackInterfaces returns the loopback interfaces that are up. Linux carries multicast
// on them even without the MULTICAST flag once a socket selects them.
func loopbackInterfaces() ([]net.Interface, error) {
	return interfaces(net.FlagUp | net.FlagLoopback)
}

func interfaces(want net.Flags) ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []net.Interface
	for _, ifi := range all {
		if ifi.Flags&want == want {
			out = append(out, ifi)
		}
	}
	return out, nil
}

// mdnsLink is an interface mDNS uses, with its first IPv4 address and its networks.
type mdnsLink struct {
	ifi  net.Interface
	addr net.IP // IPv4, selects the interface in IP_MULTICAST_IF and IP_ADD_MEMBERSHIP
	nets []*net.IPNet
}

// mdnsPeer is an agent that answered.
type mdnsPeer struct {
	instance string
	address  string // gossip host:port
	cluster  string
}

// mdnsCached is what the cache holds about one instance.
type mdnsCached struct {
	peers   []mdnsPeer
	ttl     uint32
	expires time.Time
}

// mdnsDiscovery is the responder, cache and browser of one agent. start starts the one
// goroutine it owns (serve), which reads the socket until close; lookup and refresh are
// called from one goroutine at a time (the membership's discovery loop) while serve runs.
type mdnsDiscovery struct {
	log      *slog.Logger
	net      mdnsNet
	service  string // <service>.local.
	instance string // <node>.<service>.local.
	host     string // SRV target and owner of the A record: picket-<ip with dashes>.local.
	node     string
	cluster  string
	self     string // this agent's gossip host:port
	ip       net.IP // this agent's advertise address
	port     uint16
	active   func() bool // false once the agent left: answer nothing more

	links atomic.Pointer[[]mdnsLink] // set by refresh
	local atomic.Pointer[[]net.IP]   // every address of this machine, set by refresh

	conn   *net.UDPConn      // nil until start
	sendMu sync.Mutex        // guards IP_MULTICAST_IF and the write that follows it, and lastMC
	lastMC map[int]time.Time // last multicast answer per interface index

	cacheMu sync.Mutex
	cache   map[string]mdnsCached // by lower-case instance name

	done      chan struct{}
	closeOnce sync.Once
}

// newMDNS prepares mDNS discovery for the agent node of cluster whose gossip address is
// self (IP:port, as memberlist advertises it). It opens no socket.
func newMDNS(c config.MDNSDiscovery, cluster, node, self string, n mdnsNet, active func() bool, log *slog.Logger) (*mdnsDiscovery, error) {
	host, portStr, err := net.SplitHostPort(self)
	if err != nil {
		return nil, fmt.Errorf("advertise address %q: %w", self, err)
	}
	ip := net.ParseIP(host)
	port, err := strconv.Atoi(portStr)
	if ip == nil || ip.IsUnspecified() || err != nil || port < 1 || port > 65535 {
		return nil, fmt.Errorf("the advertise address %q is not known, so there is nothing to announce: set cluster.advertise", self)
	}
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	svc := c.Service
	if svc == "" {
		svc = config.DefaultMDNSService
	}
	n = n.withDefaults()
	if n.ifaces == nil {
		n.ifaces = multicastInterfaces
		if ip.IsLoopback() {
			n.ifaces = loopbackInterfaces
		}
	}
	if active == nil {
		active = func() bool { return true }
	}
	d := &mdnsDiscovery{
		log:     log,
		net:     n,
		service: strings.TrimSuffix(svc, ".") + mdnsServiceSuffix,
		node:    node,
		cluster: cluster,
		self:    self,
		ip:      ip,
		port:    uint16(port),
		active:  active,
		lastMC:  map[int]time.Time{},
		cache:   map[string]mdnsCached{},
		done:    make(chan struct{}),
	}
	d.instance = instanceLabel(node) + "." + d.service
	d.host = "picket-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String()) + mdnsServiceSuffix
	for _, name := range []string{d.service, d.instance, d.host} {
		if _, ok := dns.IsDomainName(name); !ok {
			return nil, fmt.Errorf("%q is not a valid DNS name: check cluster.discovery.mdns.service and node_name", name)
		}
	}
	return d, nil
}

// instanceLabel makes a node name one DNS label of at most 63 bytes, with dots and
// backslashes escaped.
func instanceLabel(node string) string {
	var b strings.Builder
	n := 0
	for _, r := range node {
		if n += len(string(r)); n > 63 {
			break
		}
		if r == '.' || r == '\\' {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// String describes the discovery for logs.
func (d *mdnsDiscovery) String() string {
	return fmt.Sprintf("%s on %s", d.service, d.net.group)
}

// start opens the socket on the group's port, joins the group on the interfaces and
// starts answering and listening.
func (d *mdnsDiscovery) start() error {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return sockopt(c, func(fd int) error {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
				return fmt.Errorf("SO_REUSEADDR: %w", err)
			}
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
				return fmt.Errorf("SO_REUSEPORT: %w", err)
			}
			return nil
		})
	}}
	addr := net.JoinHostPort("0.0.0.0", strconv.Itoa(d.net.group.Port))
	pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return fmt.Errorf("listen on udp %s: %w; another program may hold the mDNS port without sharing it", addr, err)
	}
	d.conn = pc.(*net.UDPConn)
	if err := setMulticastOpts(d.conn); err != nil {
		d.conn.Close()
		return err
	}
	links := d.refresh()
	var names []string
	for _, l := range links {
		names = append(names, l.ifi.Name)
	}
	go d.serve()
	d.log.Info("mDNS discovery started", "service", d.service, "instance", d.instance, "address", d.self,
		"group", d.net.group.String(), "interfaces", names)
	return nil
}

// sockopt runs f on the socket of c.
func sockopt(c syscall.RawConn, f func(fd int) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// setMulticastOpts gives multicast sent on conn the TTL 255 of RFC 6762 §11 and loops it
// back, so agents on one machine hear each other.
func setMulticastOpts(conn *net.UDPConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	return sockopt(rc, func(fd int) error {
		if err := unix.SetsockoptByte(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_TTL, 255); err != nil {
			return fmt.Errorf("IP_MULTICAST_TTL: %w", err)
		}
		if err := unix.SetsockoptByte(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_LOOP, 1); err != nil {
			return fmt.Errorf("IP_MULTICAST_LOOP: %w", err)
		}
		return nil
	})
}

// setMulticastIf makes conn send multicast out of the interface that has addr.
func setMulticastIf(conn *net.UDPConn, addr net.IP) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	return sockopt(rc, func(fd int) error {
		return unix.SetsockoptInet4Addr(fd, unix.IPPROTO_IP, unix.IP_MULTICAST_IF, [4]byte(addr.To4()))
	})
}

// refresh finds the interfaces to use and, once started, joins the group on any it has
// not joined yet (one that came up after the start, say). It returns the interfaces.
func (d *mdnsDiscovery) refresh() []mdnsLink {
	ifis, err := d.net.ifaces()
	if err != nil {
		d.log.Debug("list network interfaces for mDNS", "err", err)
	}
	var links []mdnsLink
	for _, ifi := range ifis {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		l := mdnsLink{ifi: ifi}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				if l.addr == nil {
					l.addr = ipn.IP.To4()
				}
				l.nets = append(l.nets, ipn)
			}
		}
		if l.addr != nil {
			links = append(links, l)
		}
	}
	var local []net.IP
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				local = append(local, ipn.IP)
			}
		}
	}
	d.local.Store(&local)
	d.links.Store(&links)
	if d.conn == nil || !d.net.group.IP.IsMulticast() {
		return links
	}
	rc, err := d.conn.SyscallConn()
	if err != nil {
		return links
	}
	for _, l := range links {
		mreq := &unix.IPMreq{Multiaddr: [4]byte(d.net.group.IP.To4()), Interface: [4]byte(l.addr)}
		err := sockopt(rc, func(fd int) error {
			return unix.SetsockoptIPMreq(fd, unix.IPPROTO_IP, unix.IP_ADD_MEMBERSHIP, mreq)
		})
		switch {
		case err == nil:
			d.log.Debug("mDNS joined the multicast group", "interface", l.ifi.Name, "group", d.net.group.IP.String())
		case errors.Is(err, unix.EADDRINUSE): // joined before
		default:
			d.log.Debug("mDNS cannot join the multicast group", "interface", l.ifi.Name, "err", err)
		}
	}
	return links
}

// serve reads the socket until close.
func (d *mdnsDiscovery) serve() {
	defer close(d.done)
	buf := make([]byte, mdnsMaxPacket)
	for {
		n, src, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			d.log.Debug("mDNS read", "err", err)
			time.Sleep(50 * time.Millisecond) // no busy loop on a persistent error
			continue
		}
		d.handle(buf[:n], src)
	}
}

// handle answers a query or remembers an answer that the socket received from src.
// Packets from off the local link are ignored (RFC 6762 §11), so the agent is no
// amplifier for queries from afar.
func (d *mdnsDiscovery) handle(pkt []byte, src *net.UDPAddr) {
	var m dns.Msg
	if err := m.Unpack(pkt); err != nil {
		d.log.Debug("drop a malformed mDNS packet", "from", src.String(), "err", err)
		return
	}
	if m.Opcode != dns.OpcodeQuery || !d.reachableFrom(src.IP) {
		return
	}
	legacy := src.Port != d.net.group.Port
	if m.Response {
		// Answers come from the mDNS port (§6); in tests also from a unicast target.
		if !legacy || slices.ContainsFunc(d.net.targets, func(t *net.UDPAddr) bool { return t.IP.Equal(src.IP) && t.Port == src.Port }) {
			d.remember(&m, src.IP)
		}
		return
	}
	if len(m.Question) == 0 || !d.active() {
		return
	}
	resp, unicast := d.answer(&m, legacy)
	if resp == nil {
		return
	}
	out, err := resp.Pack()
	if err != nil {
		d.log.Debug("pack mDNS answer", "err", err)
		return
	}
	if legacy || unicast || !d.net.group.IP.IsMulticast() {
		if _, err := d.conn.WriteToUDP(out, src); err != nil {
			d.log.Debug("send mDNS answer", "to", src.String(), "err", err)
		}
		return
	}
	if link, ok := d.linkOf(src.IP); ok {
		if _, err := d.multicast(out, []mdnsLink{link}, true); err != nil {
			d.log.Debug("send mDNS answer", "interface", link.ifi.Name, "err", err)
		}
	}
}

// answer builds the answer to q, or returns nil when q asks for nothing this agent has.
// legacy answers (to a querier not on the mDNS port) repeat the question and the ID, have
// short TTLs and no cache-flush bits; unicast says every question answered asked for a
// unicast answer (the QU bit).
func (d *mdnsDiscovery) answer(q *dns.Msg, legacy bool) (resp *dns.Msg, unicast bool) {
	ttl := uint32(mdnsTTL)
	if legacy {
		ttl = mdnsLegacyTTL
	}
	var ptr, meta, srv, txt, addr bool
	unicast = true
	for _, qq := range q.Question {
		class := qq.Qclass &^ mdnsQU
		if class != dns.ClassINET && class != dns.ClassANY {
			continue
		}
		matched := true
		switch {
		case strings.EqualFold(qq.Name, d.service) && (qq.Qtype == dns.TypePTR || qq.Qtype == dns.TypeANY):
			ptr = ptr || !d.knownAnswer(q, ttl)
		case strings.EqualFold(qq.Name, mdnsMetaQuery) && (qq.Qtype == dns.TypePTR || qq.Qtype == dns.TypeANY):
			meta = true
		case strings.EqualFold(qq.Name, d.instance) && qq.Qtype == dns.TypeSRV:
			srv = true
		case strings.EqualFold(qq.Name, d.instance) && qq.Qtype == dns.TypeTXT:
			txt = true
		case strings.EqualFold(qq.Name, d.instance) && qq.Qtype == dns.TypeANY:
			srv, txt = true, true
		case strings.EqualFold(qq.Name, d.host) && (qq.Qtype == d.addrType() || qq.Qtype == dns.TypeANY):
			addr = true
		default:
			matched = false
		}
		if matched && qq.Qclass&mdnsQU == 0 {
			unicast = false
		}
	}
	if !ptr && !meta && !srv && !txt && !addr {
		return nil, false
	}
	flush := uint16(mdnsCacheFlush)
	if legacy {
		flush = 0
	}
	hdr := func(name string, typ uint16, class uint16) dns.RR_Header {
		return dns.RR_Header{Name: name, Rrtype: typ, Class: class, Ttl: ttl}
	}
	srvRR := &dns.SRV{Hdr: hdr(d.instance, dns.TypeSRV, dns.ClassINET|flush), Target: d.host, Port: d.port}
	txtRR := &dns.TXT{Hdr: hdr(d.instance, dns.TypeTXT, dns.ClassINET|flush), Txt: d.txt()}
	var addrRR dns.RR = &dns.A{Hdr: hdr(d.host, dns.TypeA, dns.ClassINET|flush), A: d.ip}
	if d.ip.To4() == nil {
		addrRR = &dns.AAAA{Hdr: hdr(d.host, dns.TypeAAAA, dns.ClassINET|flush), AAAA: d.ip}
	}
	resp = &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Authoritative: true}}
	if legacy {
		resp.Id = q.Id
		resp.Question = slices.Clone(q.Question)
	}
	if meta {
		resp.Answer = append(resp.Answer, &dns.PTR{Hdr: hdr(mdnsMetaQuery, dns.TypePTR, dns.ClassINET), Ptr: d.service})
	}
	if ptr {
		resp.Answer = append(resp.Answer, &dns.PTR{Hdr: hdr(d.service, dns.TypePTR, dns.ClassINET), Ptr: d.instance})
	}
	if srv {
		resp.Answer = append(resp.Answer, srvRR)
	}
	if txt {
		resp.Answer = append(resp.Answer, txtRR)
	}
	if addr {
		resp.Answer = append(resp.Answer, addrRR)
	}
	// Additional records save the querier a round trip (RFC 6763 §12).
	if ptr && !srv {
		resp.Extra = append(resp.Extra, srvRR)
	}
	if ptr && !txt {
		resp.Extra = append(resp.Extra, txtRR)
	}
	if (ptr || srv) && !addr {
		resp.Extra = append(resp.Extra, addrRR)
	}
	return resp, unicast
}

func (d *mdnsDiscovery) addrType() uint16 {
	if d.ip.To4() != nil {
		return dns.TypeA
	}
	return dns.TypeAAAA
}

// txt is the content of the TXT record: the format version, the cluster and the node.
func (d *mdnsDiscovery) txt() []string {
	return []string{"v=" + mdnsTXTVersion, "cluster=" + d.cluster, "node=" + d.node}
}

// knownAnswer says whether q lists this agent's PTR record with at least half its TTL
// left, in which case the querier knows it already (known-answer suppression, §7.1).
func (d *mdnsDiscovery) knownAnswer(q *dns.Msg, ttl uint32) bool {
	for _, rr := range q.Answer {
		if p, ok := rr.(*dns.PTR); ok && strings.EqualFold(p.Hdr.Name, d.service) &&
			strings.EqualFold(p.Ptr, d.instance) && p.Hdr.Ttl >= ttl/2 {
			return true
		}
	}
	return false
}

// reachableFrom says whether a packet from ip is to be handled: it comes from this
// machine or from a network of one of the interfaces mDNS uses. An agent that advertises
// a loopback address talks to this machine only.
func (d *mdnsDiscovery) reachableFrom(ip net.IP) bool {
	if ip.IsLoopback() {
		return true
	}
	if l := d.local.Load(); l != nil && slices.ContainsFunc(*l, ip.Equal) {
		return true
	}
	if d.ip.IsLoopback() {
		return false
	}
	_, ok := d.linkOf(ip)
	return ok
}

// linkOf returns the interface mDNS uses whose networks hold ip.
func (d *mdnsDiscovery) linkOf(ip net.IP) (mdnsLink, bool) {
	for _, l := range d.allLinks() {
		for _, n := range l.nets {
			if n.Contains(ip) {
				return l, true
			}
		}
	}
	return mdnsLink{}, false
}

func (d *mdnsDiscovery) allLinks() []mdnsLink {
	if l := d.links.Load(); l != nil {
		return *l
	}
	return nil
}

// multicast sends pkt to the group on each of links and returns on how many it went out.
// limited (answers) sends at most once per mdnsMulticastGap on an interface (RFC 6762 §6):
// whoever asks within that time heard the last answer.
func (d *mdnsDiscovery) multicast(pkt []byte, links []mdnsLink, limited bool) (int, error) {
	d.sendMu.Lock()
	defer d.sendMu.Unlock()
	now := time.Now()
	sent := 0
	var errs []error
	for _, l := range links {
		if limited {
			if now.Sub(d.lastMC[l.ifi.Index]) < mdnsMulticastGap {
				continue
			}
			d.lastMC[l.ifi.Index] = now
		}
		if err := setMulticastIf(d.conn, l.addr); err != nil {
			errs = append(errs, fmt.Errorf("select interface %s: %w", l.ifi.Name, err))
			continue
		}
		if _, err := d.conn.WriteToUDP(pkt, d.net.group); err != nil {
			errs = append(errs, fmt.Errorf("send to %s on %s: %w", d.net.group, l.ifi.Name, err))
			continue
		}
		sent++
	}
	return sent, errors.Join(errs...)
}

// close says goodbye (the records with TTL 0, so the caches of other agents and mDNS
// responders drop them), stops serve and waits for it. It is safe to call more than once.
func (d *mdnsDiscovery) close() {
	d.closeOnce.Do(func() {
		if d.conn == nil {
			return
		}
		if d.net.group.IP.IsMulticast() {
			q := new(dns.Msg)
			q.SetQuestion(d.service, dns.TypePTR)
			if bye, _ := d.answer(q, false); bye != nil {
				for _, rr := range append(bye.Answer, bye.Extra...) {
					rr.Header().Ttl = 0
				}
				if pkt, err := bye.Pack(); err == nil {
					if _, err := d.multicast(pkt, d.allLinks(), false); err != nil {
						d.log.Debug("send mDNS goodbye", "err", err)
					}
				}
			}
		}
		d.conn.Close()
		<-d.done
	})
}

// parse returns the agents an answer describes: each PTR of the service to an instance
// whose SRV record is in the same message, at the addresses of the SRV target given in
// the message, or at src, the sender, when it gives none; and the instances it says
// goodbye to (PTR with TTL 0).
func (d *mdnsDiscovery) parse(resp *dns.Msg, src net.IP) (peers []mdnsPeer, ttl uint32, goodbyes []string) {
	records := append(slices.Clone(resp.Answer), resp.Extra...)
	srvs := map[string]*dns.SRV{}
	txts := map[string]*dns.TXT{}
	ips := map[string][]net.IP{}
	for _, rr := range records {
		name := strings.ToLower(rr.Header().Name)
		switch r := rr.(type) {
		case *dns.SRV:
			srvs[name] = r
		case *dns.TXT:
			txts[name] = r
		case *dns.A:
			ips[name] = append(ips[name], r.A)
		case *dns.AAAA:
			ips[name] = append(ips[name], r.AAAA)
		}
	}
	for _, rr := range records {
		ptr, ok := rr.(*dns.PTR)
		if !ok || !strings.EqualFold(ptr.Hdr.Name, d.service) {
			continue
		}
		if ptr.Hdr.Ttl == 0 {
			goodbyes = append(goodbyes, ptr.Ptr)
			continue
		}
		inst := strings.ToLower(ptr.Ptr)
		srv := srvs[inst]
		if srv == nil {
			d.log.Debug("mDNS answer without the SRV record of its instance; skipped", "instance", ptr.Ptr, "from", src.String())
			continue
		}
		if ttl == 0 || ptr.Hdr.Ttl < ttl {
			ttl = ptr.Hdr.Ttl
		}
		p := mdnsPeer{instance: ptr.Ptr}
		if txt := txts[inst]; txt != nil {
			for _, kv := range txt.Txt {
				if k, v, _ := strings.Cut(kv, "="); strings.EqualFold(k, "cluster") {
					p.cluster = v
				}
			}
		}
		addrs := ips[strings.ToLower(srv.Target)]
		if len(addrs) == 0 && src != nil {
			addrs = []net.IP{src}
		}
		for _, ip := range addrs {
			p.address = net.JoinHostPort(ip.String(), strconv.Itoa(int(srv.Port)))
			peers = append(peers, p)
		}
	}
	return peers, ttl, goodbyes
}

// remember puts the agents an answer describes in the cache for the answer's TTL, and
// takes out those it says goodbye to.
func (d *mdnsDiscovery) remember(resp *dns.Msg, src net.IP) {
	peers, ttl, goodbyes := d.parse(resp, src)
	byInstance := map[string][]mdnsPeer{}
	for _, p := range peers {
		k := strings.ToLower(p.instance)
		byInstance[k] = append(byInstance[k], p)
	}
	now := time.Now()
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	for _, g := range goodbyes {
		delete(d.cache, strings.ToLower(g))
	}
	for k, ps := range byInstance {
		if _, ok := d.cache[k]; !ok && len(d.cache) >= mdnsMaxCached {
			d.pruneLocked(now)
			if len(d.cache) >= mdnsMaxCached {
				d.log.Debug("mDNS cache full; answer not kept", "instance", ps[0].instance)
				continue
			}
		}
		d.cache[k] = mdnsCached{peers: ps, ttl: ttl, expires: now.Add(time.Duration(ttl) * time.Second)}
	}
}

func (d *mdnsDiscovery) pruneLocked(now time.Time) {
	for k, c := range d.cache {
		if !now.Before(c.expires) {
			delete(d.cache, k)
		}
	}
}

// cached returns the unexpired peers in the cache.
func (d *mdnsDiscovery) cached() []mdnsPeer {
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	d.pruneLocked(time.Now())
	var out []mdnsPeer
	for _, c := range d.cache {
		out = append(out, c.peers...)
	}
	return out
}

// query is a PTR query for the service that lists the instances cached with more than
// half their TTL left, as far as they fit in mdnsKnownAnswers bytes.
func (d *mdnsDiscovery) query() *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(d.service, dns.TypePTR)
	q.Id = 0
	q.RecursionDesired = false
	now := time.Now()
	d.cacheMu.Lock()
	defer d.cacheMu.Unlock()
	for _, c := range d.cache {
		left := c.expires.Sub(now)
		if left <= time.Duration(c.ttl)*time.Second/2 || len(c.peers) == 0 {
			continue
		}
		ka := &dns.PTR{Hdr: dns.RR_Header{Name: d.service, Rrtype: dns.TypePTR, Class: dns.ClassINET,
			Ttl: uint32(left / time.Second)}, Ptr: c.peers[0].instance}
		if q.Len()+dns.Len(ka) > mdnsKnownAnswers {
			break
		}
		q.Answer = append(q.Answer, ka)
	}
	return q
}

// browse sends a query for the service to each target (for the group, on each interface)
// from the mDNS socket and waits the window for the answers, which serve puts in the
// cache.
func (d *mdnsDiscovery) browse(ctx context.Context, links []mdnsLink) error {
	if d.conn == nil {
		return errors.New("mDNS discovery is not started")
	}
	pkt, err := d.query().Pack()
	if err != nil {
		return err
	}
	sent := 0
	var errs []error
	for _, t := range d.net.targets {
		switch {
		case !t.IP.IsMulticast():
			if _, err := d.conn.WriteToUDP(pkt, t); err != nil {
				errs = append(errs, fmt.Errorf("send an mDNS query to %s: %w", t, err))
				continue
			}
			sent++
		case len(links) == 0:
			errs = append(errs, errNoMulticastInterface)
		default:
			n, err := d.multicast(pkt, links, false)
			if err != nil {
				errs = append(errs, err)
			}
			sent += n
		}
	}
	if sent == 0 {
		return errors.Join(errs...)
	}
	for _, err := range errs {
		d.log.Debug("mDNS query not sent everywhere", "err", err)
	}
	t := time.NewTimer(d.net.window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// lookup browses for the service and returns the sorted gossip addresses of the agents
// of this cluster that are known, without this agent. Agents of other clusters are logged
// at debug and left out (memberlist would refuse them for their label anyway), and so are
// loopback addresses for an agent that does not advertise one and the other way round.
func (d *mdnsDiscovery) lookup(ctx context.Context) ([]string, error) {
	if err := d.browse(ctx, d.refresh()); err != nil {
		return nil, err
	}
	var out []string
	for _, p := range d.cached() {
		host, _, _ := net.SplitHostPort(p.address)
		ip := net.ParseIP(host)
		switch {
		case p.address == d.self:
		case p.cluster != d.cluster:
			d.log.Debug("mDNS found an agent of another cluster; not joining it",
				"instance", p.instance, "address", p.address, "peer_cluster", p.cluster, "cluster", d.cluster)
		case ip == nil || ip.IsLoopback() != d.ip.IsLoopback():
			d.log.Debug("mDNS found an agent at an address this agent cannot share; not joining it",
				"instance", p.instance, "address", p.address, "advertise", d.self)
		default:
			out = append(out, p.address)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// nextPause is the pause between browse starts after prev: doubled, at most interval.
func nextPause(prev, interval time.Duration) time.Duration {
	return min(2*prev, interval)
}

// discoverMDNS browses for agents of this cluster on the schedule of mdnsNet (at once,
// then after 1 s, 2 s, 4 s, 8 s, then every 10 s) and joins those that are not alive
// members yet. Failures are logged once per change.
func (m *Membership) discoverMDNS(ctx context.Context) {
	var st discoverState
	pause := m.mdns.net.first
	first := true
	for {
		start := time.Now()
		if !m.left.Load() {
			m.discoverMDNSOnce(ctx, &st, first)
			first = false
		}
		t := time.NewTimer(max(0, pause-time.Since(start)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pause = nextPause(pause, m.mdns.net.interval)
	}
}

func (m *Membership) discoverMDNSOnce(ctx context.Context, st *discoverState, first bool) {
	found, err := m.mdns.lookup(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		if msg := err.Error(); msg != st.lastErr {
			st.lastErr = msg
			m.log.Warn("mDNS discovery cannot query; retrying every interval", "mdns", m.mdns.String(),
				"interval", m.mdns.net.interval, "err", err)
		}
		return
	}
	if st.lastErr != "" {
		st.lastErr = ""
		m.log.Info("mDNS discovery works again", "mdns", m.mdns.String())
	}
	// A crashed agent stays in the caches for up to the records' TTL; while memberlist
	// still lists it as failed or left, joining it would only wait for a timeout.
	gone := map[string]bool{}
	for _, mem := range m.table.members() {
		if mem.Status == StatusDead || mem.Status == StatusLeft {
			gone[mem.Address] = true
		}
	}
	var targets []string
	for _, a := range found {
		if !gone[a] {
			targets = append(targets, a)
		}
	}
	if first || !slices.Equal(targets, st.targets) {
		st.targets = targets
		if len(targets) == 0 {
			m.log.Info("mDNS discovery found no peers yet; asking again", "mdns", m.mdns.String(),
				"every", m.mdns.net.interval, "cluster", m.cfg.Name)
		} else {
			m.log.Info("mDNS discovery found peers", "mdns", m.mdns.String(), "addresses", targets)
		}
	}
	m.joinDiscovered(ctx, st, "mDNS discovery", targets)
}

// Package cluster is picket's clustering: gossip membership with hashicorp/memberlist
// (membership, metadata, events, discovery, gossip encryption) and, on top of it, the
// aggregator's Raft group and agent-to-agent RPC.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/version"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Membership defaults.
const (
	// DefaultLeaveTimeout bounds a graceful leave when the caller gives no timeout, and the
	// leave Run makes when its context ends.
	DefaultLeaveTimeout      = 5 * time.Second
	defaultBind              = "0.0.0.0:7946"
	defaultRetryJoinInterval = 30 * time.Second
	joinBackoffStart         = 500 * time.Millisecond
	resolveTimeout           = 5 * time.Second
)

// Membership errors, checked with errors.Is.
var (
	ErrClosed        = errors.New("cluster membership is closed")
	ErrRunning       = errors.New("cluster membership is already running")
	ErrLeft          = errors.New("this agent has left the cluster: restart it to join again")
	ErrUnknownMember = errors.New("no such alive member")
	ErrNoResponse    = errors.New("no answer")
)

// Options are the dependencies and settings of a Membership.
type Options struct {
	Config   config.Cluster
	NodeName string       // unique in the cluster; default: the host name
	Meta     Meta         // initial metadata; nil Tags default to Config.Tags, empty Version to this build's
	Logger   *slog.Logger // default: discard
	Meter    metric.Meter // default: no-op

	mdnsNet mdnsNet // tests: mDNS group, port, interfaces and timing; zero: the real ones
}

// Membership is this agent's gossip membership. Its methods are safe for concurrent use.
// Create it with NewMembership, drive it with Run, stop it with Close (Run closes it when
// its context ends).
type Membership struct {
	cfg          config.Cluster
	log          *slog.Logger
	ml           *memberlist.Memberlist
	mlc          *memberlist.Config
	keyring      *memberlist.Keyring // nil when gossip is not encrypted
	hub          *hub
	table        *table
	dns          *dnsDiscovery  // nil when DNS discovery is off
	mdns         *mdnsDiscovery // nil when mDNS discovery is off; its responder runs until Close
	retryJoin    time.Duration  // cap of the seed join backoff
	pushEvery    time.Duration  // minimum pause between metadata broadcasts
	pushCh       chan struct{}  // wakes the metadata loop; capacity 1
	pushMu       sync.Mutex     // serialises memberlist UpdateNode calls
	localAddress string         // gossip host:port other members use for this agent

	metaMu   sync.Mutex
	local    Meta      // current metadata
	encoded  []byte    // local encoded, as NodeMeta returns it
	leaving  bool      // the leave intent is set in encoded
	gossiped Meta      // metadata as last broadcast
	lastPush time.Time // time of the last broadcast
	pending  bool      // local changed meaningfully since the last broadcast

	leaveMu   sync.Mutex // memberlist panics on Leave after Shutdown: the two exclude each other
	left      atomic.Bool
	running   atomic.Bool
	mu        sync.Mutex // guards closed against wg.Add
	closed    atomic.Bool
	closeCh   chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // Ping goroutines
}

// NewMembership creates the memberlist, binds its TCP and UDP listeners and starts gossiping
// as a cluster of one; Run (or Join) contacts the other members. Errors say which setting is
// wrong and how to fix it.
func NewMembership(o Options) (*Membership, error) {
	cfg := o.Config
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	meter := o.Meter
	if meter == nil {
		meter = noop.NewMeterProvider().Meter("")
	}
	name := o.NodeName
	if name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return nil, fmt.Errorf("node_name is empty and the host name is unknown (%v): set node_name", err)
		}
		name = h
	}
	c, err := profileConfig(cfg.Profile)
	if err != nil {
		return nil, err
	}
	c.Name = name
	c.Label = cfg.Name
	if len(c.Label) > memberlist.LabelMaxSize {
		return nil, fmt.Errorf("cluster.name is %d bytes long; memberlist allows %d: shorten it", len(c.Label), memberlist.LabelMaxSize)
	}
	bindIP, err := setAddresses(c, cfg.Bind, cfg.Advertise)
	if err != nil {
		return nil, err
	}
	key, insecure, err := checkSecurity(cfg, bindIP)
	if err != nil {
		return nil, err
	}
	m := &Membership{
		cfg:       cfg,
		log:       log.With("component", "cluster"),
		mlc:       c,
		retryJoin: cfg.RetryJoinInterval.D(),
		pushEvery: c.ProbeInterval,
		pushCh:    make(chan struct{}, 1),
		closeCh:   make(chan struct{}),
	}
	if m.retryJoin <= 0 {
		m.retryJoin = defaultRetryJoinInterval
	}
	if key != nil {
		kr, err := memberlist.NewKeyring(nil, key)
		if err != nil {
			return nil, fmt.Errorf("cluster.key: %w", err)
		}
		m.keyring = kr
		c.Keyring = kr
		c.GossipVerifyIncoming = true
		c.GossipVerifyOutgoing = true
	}
	if insecure {
		m.log.Warn("GOSSIP IS NOT ENCRYPTED: cluster.insecure is true and cluster.key is empty, so anyone who can reach "+
			c.BindAddr+" can join this cluster, read its metadata and forge membership; set cluster.key (generate one with `picket keygen`)",
			"bind", cfg.Bind)
	}

	m.local = o.Meta.clone()
	if m.local.Tags == nil {
		m.local.Tags = maps.Clone(cfg.Tags)
	}
	if m.local.Version == "" {
		m.local.Version = version.Version
	}
	if m.encoded, err = encodeMeta(m.local, false); err != nil {
		return nil, fmt.Errorf("node metadata of %s: %w", name, err)
	}
	m.gossiped = m.local.clone()
	m.lastPush = time.Now()

	if m.dns, err = newDNSDiscovery(cfg.Discovery.DNS, dnsDefaultPort(c.BindPort)); err != nil {
		return nil, err
	}
	if m.hub, err = newHub(m.log, meter); err != nil {
		return nil, err
	}
	m.table = newTable(m.log, m.hub, c.GossipToTheDeadTime)
	if err := m.table.registerGauge(meter); err != nil {
		return nil, err
	}
	c.Delegate = metaDelegate{m}
	c.Events = m.table
	c.Logger = newMemberlistLogger(log.With("component", "memberlist"), cfg.Name)

	bind := net.JoinHostPort(c.BindAddr, strconv.Itoa(c.BindPort))
	ml, err := memberlist.Create(c)
	if err != nil {
		m.table.unregister()
		return nil, fmt.Errorf("start gossip on %s (cluster.bind %q, cluster.advertise %q): %w; %s",
			bind, cfg.Bind, cfg.Advertise, err, createHint(err))
	}
	m.ml = ml
	m.localAddress = ml.LocalNode().Address()
	m.log.Info("gossip started", "node", name, "bind", net.JoinHostPort(c.BindAddr, strconv.Itoa(c.BindPort)), // actual port
		"advertise", m.localAddress, "cluster", cfg.Name, "profile", profileName(cfg.Profile), "encrypted", key != nil)
	if cfg.Discovery.MDNS.Enabled {
		if err := m.startMDNS(cfg, o.mdnsNet); err != nil {
			_ = ml.Shutdown()
			m.table.unregister()
			return nil, fmt.Errorf("cluster.discovery.mdns: %w", err)
		}
	}
	return m, nil
}

// startMDNS starts the mDNS responder, which announces this agent's gossip address; it
// answers until the agent leaves and stops on Close.
func (m *Membership) startMDNS(cfg config.Cluster, n mdnsNet) error {
	active := func() bool { return !m.left.Load() && !m.closed.Load() }
	d, err := newMDNS(cfg.Discovery.MDNS, cfg.Name, m.mlc.Name, m.localAddress, n, active, m.log.With("discovery", "mdns"))
	if err != nil {
		return err
	}
	if err := d.start(); err != nil {
		return err
	}
	m.mdns = d
	return nil
}

func profileName(p string) string {
	if p == "" {
		return ProfileLAN
	}
	return p
}

func dnsDefaultPort(bindPort int) int {
	if bindPort == 0 {
		return defaultGossipPort
	}
	return bindPort
}

// createHint says how to fix a memberlist.Create error. Memberlist formats its errors with
// %v, so the cause is only available as text.
func createHint(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "address already in use"):
		return "another process (another picket, Consul or Serf agent?) uses this port: stop it or change cluster.bind"
	case strings.Contains(s, "cannot assign requested address"):
		return "the cluster.bind host is not an address of this machine: use one of its addresses or 0.0.0.0"
	case strings.Contains(s, "permission denied"):
		return "this user may not bind that port: use a port above 1023"
	case strings.Contains(s, "private IP"), strings.Contains(s, "advertise"):
		return "set cluster.advertise to the address other agents should use to reach this one"
	default:
		return "check cluster.bind and cluster.advertise"
	}
}

// setAddresses fills the bind and advertise settings of c from cluster.bind ("host:port",
// default 0.0.0.0:7946; port 0 picks a free port) and cluster.advertise ("", "host" or
// "host:port"; empty lets memberlist pick the bind address, or the first private IPv4
// address when binding to 0.0.0.0; the port defaults to the bind port). It returns the
// bind IP.
func setAddresses(c *memberlist.Config, bind, advertise string) (net.IP, error) {
	if bind == "" {
		bind = defaultBind
	}
	host, portStr, err := net.SplitHostPort(bind)
	if err != nil {
		return nil, fmt.Errorf("cluster.bind %q is not host:port (%v): use e.g. 0.0.0.0:7946", bind, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return nil, fmt.Errorf("cluster.bind %q: port %q is not a number from 0 to 65535", bind, portStr)
	}
	ip := net.IPv4zero
	if host != "" {
		if ip, err = resolveIP(host); err != nil {
			return nil, fmt.Errorf("cluster.bind %q: %w: use an IP address of this machine", bind, err)
		}
	}
	c.BindAddr, c.BindPort = ip.String(), port
	c.AdvertiseAddr, c.AdvertisePort = "", port
	if advertise == "" {
		if ip.IsUnspecified() && ip.To4() == nil {
			return nil, fmt.Errorf("cluster.bind %q binds all IPv6 addresses: set cluster.advertise to the address other agents should use", bind)
		}
		return ip, nil
	}
	ahost, aport := advertise, ""
	if h, p, err := net.SplitHostPort(advertise); err == nil {
		ahost, aport = h, p
	}
	aip, err := resolveIP(ahost)
	if err != nil {
		return nil, fmt.Errorf("cluster.advertise %q: %w: use an address other agents can reach", advertise, err)
	}
	if aip.IsUnspecified() {
		return nil, fmt.Errorf("cluster.advertise %q is not a reachable address: use the address other agents should use", advertise)
	}
	c.AdvertiseAddr = aip.String()
	if aport != "" {
		p, err := strconv.Atoi(aport)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("cluster.advertise %q: port %q is not a number from 1 to 65535", advertise, aport)
		}
		c.AdvertisePort = p
	}
	return ip, nil
}

// resolveIP parses host as an IP address or resolves it, preferring IPv4.
func resolveIP(host string) (net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %q: %w", host, err)
	}
	for _, ip := range ips {
		if ip.To4() != nil {
			return ip.To4(), nil
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("%q has no address", host)
	}
	return ips[0], nil
}

// checkSecurity decodes cluster.key. Without a key, gossip bound to a loopback address is
// fine (nobody else can reach it); on other addresses it needs cluster.insecure, and then
// the caller warns loudly (insecure is true).
func checkSecurity(c config.Cluster, bindIP net.IP) (key []byte, insecure bool, err error) {
	if c.Key.Value() != "" {
		k, err := ParseKey(c.Key.Value())
		if err != nil {
			return nil, false, fmt.Errorf("cluster.key: %w", err)
		}
		return k, false, nil
	}
	if bindIP.IsLoopback() {
		return nil, false, nil
	}
	if !c.Insecure {
		return nil, false, fmt.Errorf("cluster.key is empty but gossip binds to %s, which other machines can reach: "+
			"set cluster.key (generate one with `picket keygen`), or set cluster.insecure: true to run without encryption on purpose", bindIP)
	}
	return nil, true, nil
}

// metaDelegate gives memberlist this node's metadata. Memberlist calls NodeMeta from its
// own goroutines; the other methods are unused no-ops.
type metaDelegate struct{ m *Membership }

// NodeMeta implements memberlist.Delegate.
func (d metaDelegate) NodeMeta(limit int) []byte {
	d.m.metaMu.Lock()
	defer d.m.metaMu.Unlock()
	if len(d.m.encoded) > limit {
		return nil // cannot happen: encodeMeta enforces memberlist.MetaMaxSize
	}
	return slices.Clone(d.m.encoded)
}

// NotifyMsg implements memberlist.Delegate.
func (metaDelegate) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (metaDelegate) GetBroadcasts(int, int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (metaDelegate) LocalState(bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (metaDelegate) MergeRemoteState([]byte, bool) {}

// Run joins the seeds of cluster.join (retrying with exponential backoff capped at
// cluster.retry_join_interval until one answers), polls DNS discovery, browses mDNS
// discovery, joins the peers they find, and broadcasts metadata changes. It blocks until
// ctx ends or Close is called, then leaves the cluster gracefully (within
// DefaultLeaveTimeout) and closes the Membership. It returns nil after a clean stop.
func (m *Membership) Run(ctx context.Context) error {
	if m.closed.Load() {
		return ErrClosed
	}
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { m.joinSeeds(runCtx) })
	if m.dns != nil {
		wg.Go(func() { m.discover(runCtx) })
	}
	if m.mdns != nil {
		wg.Go(func() { m.discoverMDNS(runCtx) })
	}
	wg.Go(func() { m.gossipMeta(runCtx) })

	select {
	case <-ctx.Done():
	case <-m.closeCh:
	}
	cancel()
	wg.Wait()
	if !m.closed.Load() {
		if err := m.Leave(DefaultLeaveTimeout); err != nil && !errors.Is(err, ErrClosed) {
			m.log.Warn("graceful leave failed; the other members will detect this agent as failed", "err", err)
		}
	}
	if err := m.Close(); err != nil {
		m.log.Warn("shut down gossip", "err", err)
	}
	return nil
}

// joinSeeds joins cluster.join until one seed answers.
func (m *Membership) joinSeeds(ctx context.Context) {
	seeds := m.cfg.Join
	if len(seeds) == 0 {
		return
	}
	backoff := min(joinBackoffStart, m.retryJoin)
	for attempt := 1; ; attempt++ {
		n, errs := m.join(ctx, seeds)
		if n > 0 {
			m.log.Info("joined the cluster", "seeds", seeds, "contacted", n, "attempts", attempt)
			return
		}
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("cannot join the cluster yet: no seed in cluster.join answered; retrying",
			"seeds", seeds, "attempt", attempt, "retry_in", backoff, "err", errors.Join(errs...))
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, m.retryJoin)
	}
}

// Join contacts the given gossip addresses ("host:port"; a host alone uses this agent's
// bind port) and merges state with each. It returns how many answered, and an error, which
// says why each address failed, only when none did.
func (m *Membership) Join(addrs []string) (int, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	if m.left.Load() {
		return 0, ErrLeft
	}
	if len(addrs) == 0 {
		return 0, errors.New("join: no address given")
	}
	n, errs := m.join(context.Background(), addrs)
	for _, err := range errs {
		m.log.Warn("join failed", "err", err)
	}
	if n == 0 {
		return 0, errors.Join(errs...)
	}
	m.log.Info("joined", "addresses", addrs, "contacted", n)
	return n, nil
}

// join contacts addrs one at a time, stopping early when ctx ends.
func (m *Membership) join(ctx context.Context, addrs []string) (int, []error) {
	var n int
	var errs []error
	for _, a := range addrs {
		if ctx.Err() != nil {
			break
		}
		if m.left.Load() {
			errs = append(errs, ErrLeft)
			break
		}
		c, err := m.ml.Join([]string{a})
		n += c
		if err != nil {
			errs = append(errs, explainJoinError(a, err))
		}
	}
	return n, errs
}

// explainJoinError says why joining addr failed and how to fix it. Memberlist's join errors
// are untyped text, so the cause is recognised by its wording.
func explainJoinError(addr string, err error) error {
	// Memberlist wraps the cause in a go-multierror list; with one address it holds one.
	if me, ok := err.(interface{ WrappedErrors() []error }); ok && len(me.WrappedErrors()) == 1 {
		err = me.WrappedErrors()[0]
	}
	s := strings.ToLower(err.Error())
	why := "check the address and that a picket agent listens there (tcp and udp)"
	if r, ok := refusal(s); ok {
		why = r.reason + ": " + r.fix
	} else {
		switch {
		case strings.Contains(s, "eof"), strings.Contains(s, "connection reset"):
			why = "the peer closed the connection without answering: it probably belongs to another cluster " +
				"(different cluster.name) or uses a different cluster.key; its log says which"
		case strings.Contains(s, "connection refused"):
			why = "nothing listens there: check the address and that the agent runs"
		case strings.Contains(s, "timeout"), strings.Contains(s, "deadline"):
			why = "no answer in time: check the address and that firewalls pass tcp and udp to the gossip port"
		case strings.Contains(s, "no such host"), strings.Contains(s, "resolve"):
			why = "the name does not resolve: check the address"
		}
	}
	return fmt.Errorf("join %s: %s (%w)", addr, why, err)
}

// gossipMeta broadcasts metadata changes, at most once per pushEvery. It sleeps until a
// change is made or a rate-limited one is due: an idle member arms no timer.
func (m *Membership) gossipMeta(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		if wait := m.pushMeta(); wait > 0 {
			t.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.pushCh:
		case <-t.C:
		}
	}
}

// pushMeta broadcasts the local metadata when it changed meaningfully and the last
// broadcast is at least pushEvery old. It returns how long to wait before a pending change
// may go out, or 0 when none is pending.
func (m *Membership) pushMeta() time.Duration {
	m.metaMu.Lock()
	if !m.pending || m.leaving {
		m.metaMu.Unlock()
		return 0
	}
	if since := time.Since(m.lastPush); since < m.pushEvery {
		m.metaMu.Unlock()
		return m.pushEvery - since
	}
	m.pending = false
	m.lastPush = time.Now()
	m.gossiped = m.local.clone()
	m.metaMu.Unlock()

	m.pushMu.Lock()
	defer m.pushMu.Unlock()
	if m.closed.Load() || m.left.Load() {
		return 0
	}
	// UpdateNode waits until the broadcast went out; a timeout only means it is still queued.
	if err := m.ml.UpdateNode(m.pushEvery); err != nil {
		m.log.Debug("metadata broadcast still in progress", "err", err)
	}
	return 0
}

// UpdateMeta changes the local metadata with fn (after folding in memberlist's current
// health score; the agent calls it every second) and, when it changed meaningfully (load by
// 0.05 or more, or any other field), schedules a broadcast; broadcasts happen on Run's
// goroutine at most once per probe interval of the profile. Metadata that would not fit in
// memberlist's 512 bytes is refused with ErrMetaTooLarge and the previous metadata stays.
func (m *Membership) UpdateMeta(fn func(*Meta)) error {
	if m.closed.Load() {
		return ErrClosed
	}
	health := m.ml.GetHealthScore()
	m.metaMu.Lock()
	next := m.local.clone()
	next.Health = health // memberlist's score rides along with every update
	fn(&next)
	enc, err := encodeMeta(next, m.leaving)
	if err != nil {
		m.metaMu.Unlock()
		return fmt.Errorf("update node metadata: %w", err)
	}
	m.local, m.encoded = next, enc
	changed := metaChanged(m.gossiped, next)
	if changed {
		m.pending = true
	}
	m.metaMu.Unlock()
	if changed {
		select {
		case m.pushCh <- struct{}{}:
		default:
		}
	}
	return nil
}

// Leave announces a graceful leave to the cluster and waits until the announcement went
// out or timeout passes (timeout ≤ 0 means DefaultLeaveTimeout). The agent keeps answering
// gossip until Close. A left agent cannot join again; calling Leave again is a no-op.
func (m *Membership) Leave(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultLeaveTimeout
	}
	m.leaveMu.Lock()
	defer m.leaveMu.Unlock()
	if m.closed.Load() {
		return ErrClosed
	}
	if m.left.Swap(true) {
		return nil
	}
	// Say "leaving" in the metadata first: memberlist v0.7.0 does not tell the other
	// members whether a node left or failed (see metaFlagLeaving).
	m.metaMu.Lock()
	if enc, err := encodeMeta(m.local, true); err == nil {
		m.encoded, m.leaving = enc, true
	}
	m.metaMu.Unlock()
	m.pushMu.Lock()
	err := m.ml.UpdateNode(timeout / 2)
	m.pushMu.Unlock()
	if err != nil {
		m.log.Debug("leave intent broadcast still in progress", "err", err)
	}
	if err := m.ml.Leave(timeout / 2); err != nil {
		return fmt.Errorf("leave the cluster: %w; the other members will detect this agent as failed instead", err)
	}
	m.log.Info("left the cluster")
	return nil
}

// Members returns every member this agent knows, itself included, sorted by name. Dead and
// left members stay listed for the profile's GossipToTheDeadTime. Memberlist v0.7.0 does
// not expose suspicion, so a suspected member shows as alive until it is declared dead.
func (m *Membership) Members() []Member {
	members := m.table.members()
	local := m.LocalNode()
	for i := range members {
		if members[i].Name == local.Name {
			members[i] = local
		}
	}
	return members
}

// LocalNode returns this agent as a member, with its current (possibly not yet gossiped)
// metadata and the address other members use, whose port is the actual one when cluster.bind
// asked for port 0.
func (m *Membership) LocalNode() Member {
	status := StatusAlive
	if m.left.Load() {
		status = StatusLeft
	}
	m.metaMu.Lock()
	meta := m.local.clone()
	m.metaMu.Unlock()
	return Member{Name: m.mlc.Name, Address: m.localAddress, Status: status, Meta: meta}
}

// Ping sends a memberlist ping (UDP) to the named alive member and returns the round-trip
// time.
// It fails with ErrUnknownMember for a name that is not an alive member, with ErrNoResponse
// when no answer came within the profile's probe timeout, and when ctx ends.
func (m *Membership) Ping(ctx context.Context, name string) (time.Duration, error) {
	if m.closed.Load() {
		return 0, ErrClosed
	}
	var target *memberlist.Node
	for _, n := range m.ml.Members() {
		if n.Name == name {
			c := *n
			target = &c
			break
		}
	}
	if target == nil {
		if mem, ok := m.table.member(name); ok {
			return 0, fmt.Errorf("ping %s: %w: it is %s", name, ErrUnknownMember, mem.Status)
		}
		return 0, fmt.Errorf("ping %s: %w", name, ErrUnknownMember)
	}
	addr := &net.UDPAddr{IP: target.Addr, Port: int(target.Port)}
	type result struct {
		rtt time.Duration
		err error
	}
	res := make(chan result, 1)
	started := m.goTracked(func() {
		// Memberlist's own figure takes its start time after the send, so on a fast link the
		// ack can be stamped before it and the RTT comes out negative; time the call instead.
		start := time.Now()
		_, err := m.ml.Ping(name, addr)
		res <- result{time.Since(start), err}
	})
	if !started {
		return 0, ErrClosed
	}
	select {
	case <-ctx.Done():
		return 0, fmt.Errorf("ping %s at %s: %w", name, addr, ctx.Err())
	case r := <-res:
		var noResp memberlist.NoPingResponseError
		if errors.As(r.err, &noResp) {
			return 0, fmt.Errorf("ping %s at %s: %w within %s", name, addr, ErrNoResponse, m.mlc.ProbeTimeout)
		}
		if r.err != nil {
			return 0, fmt.Errorf("ping %s at %s: %w", name, addr, r.err)
		}
		return r.rtt, nil
	}
}

// goTracked runs f on a goroutine that Close waits for, unless the Membership is closed.
func (m *Membership) goTracked(f func()) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed.Load() {
		return false
	}
	m.wg.Go(f)
	return true
}

// Subscribe returns a channel of membership events with room for buf events (at least 1),
// and a function that unsubscribes and closes the channel. Events are never waited for: when
// the channel is full, the event is dropped for this subscriber, counted in
// picket_cluster_events_dropped_total and logged. Close closes every channel.
func (m *Membership) Subscribe(buf int) (<-chan Event, func()) {
	return m.hub.subscribe(buf)
}

// Close stops gossiping without leaving: the other members will detect this agent as failed
// (call Leave first for a graceful exit; Run does). It waits for memberlist's listeners and
// this package's goroutines, closes subscriber channels, and is safe to call more than once.
func (m *Membership) Close() error {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.closed.Store(true)
		m.mu.Unlock()
		close(m.closeCh)
		if m.mdns != nil {
			m.mdns.close() // stop announcing before gossip stops
		}
		m.leaveMu.Lock()
		if err := m.ml.Shutdown(); err != nil {
			m.closeErr = fmt.Errorf("shut down gossip: %w", err)
		}
		m.leaveMu.Unlock()
		m.wg.Wait()
		m.hub.close()
		m.table.unregister()
		m.log.Debug("gossip stopped")
	})
	return m.closeErr
}

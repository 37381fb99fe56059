package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/picket-dev/picket/internal/config"
)

// Discovery defaults.
const (
	defaultDiscoveryInterval = 10 * time.Second
	defaultResolvConf        = "/etc/resolv.conf"
	dnsQueryTimeout          = 2 * time.Second
	defaultGossipPort        = 7946
)

// ErrNoRecords is returned by a DNS lookup that found no usable records.
var ErrNoRecords = errors.New("no DNS records")

// dnsDiscovery resolves peers from A or SRV records with miekg/dns. It holds no mutable
// state, so lookups may run concurrently.
type dnsDiscovery struct {
	name       string        // as configured
	qtype      uint16        // dns.TypeA or dns.TypeSRV
	port       int           // for A records
	server     string        // host:port; empty: the servers of resolvConf
	resolvConf string        // path of resolv.conf
	interval   time.Duration // polling interval
}

// newDNSDiscovery validates cluster.discovery.dns; it returns nil when Name is empty.
// defaultPort is used for A records when Port is 0.
func newDNSDiscovery(c config.DNSDiscovery, defaultPort int) (*dnsDiscovery, error) {
	if c.Name == "" {
		return nil, nil
	}
	d := &dnsDiscovery{name: c.Name, port: c.Port, server: c.Server, resolvConf: defaultResolvConf, interval: c.Interval.D()}
	switch strings.ToUpper(c.Type) {
	case "A", "":
		d.qtype = dns.TypeA
	case "SRV":
		d.qtype = dns.TypeSRV
	default:
		return nil, fmt.Errorf("cluster.discovery.dns.type %q is unknown: use A or SRV", c.Type)
	}
	if d.port == 0 {
		d.port = defaultPort
	}
	if d.port < 0 || d.port > 65535 {
		return nil, fmt.Errorf("cluster.discovery.dns.port %d is not a port number (1-65535)", c.Port)
	}
	if d.server != "" {
		if _, _, err := net.SplitHostPort(d.server); err != nil {
			d.server = net.JoinHostPort(d.server, "53")
		}
	}
	if d.interval <= 0 {
		d.interval = defaultDiscoveryInterval
	}
	return d, nil
}

// String describes the lookup for logs.
func (d *dnsDiscovery) String() string {
	return fmt.Sprintf("%s %s", dns.TypeToString[d.qtype], d.name)
}

// lookup returns the sorted, de-duplicated host:port gossip addresses the records point at.
func (d *dnsDiscovery) lookup(ctx context.Context) ([]string, error) {
	servers, names, err := d.plan()
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range names {
		targets, err := d.lookupName(ctx, servers, name)
		if err == nil && len(targets) > 0 {
			return targets, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoRecords, d)
	}
	return nil, errors.Join(errs...)
}

// plan returns the servers to ask and the names to try: the configured server and name, or
// the nameservers of resolv.conf and the name expanded with its search list.
func (d *dnsDiscovery) plan() (servers, names []string, err error) {
	if d.server != "" {
		return []string{d.server}, []string{dns.Fqdn(d.name)}, nil
	}
	cc, err := dns.ClientConfigFromFile(d.resolvConf)
	if err != nil {
		return nil, nil, fmt.Errorf("read the system resolver configuration: %w; set cluster.discovery.dns.server", err)
	}
	for _, s := range cc.Servers {
		servers = append(servers, net.JoinHostPort(s, cc.Port))
	}
	if len(servers) == 0 {
		return nil, nil, fmt.Errorf("%s lists no nameserver; set cluster.discovery.dns.server", d.resolvConf)
	}
	return servers, cc.NameList(d.name), nil
}

func (d *dnsDiscovery) lookupName(ctx context.Context, servers []string, name string) ([]string, error) {
	resp, err := exchange(ctx, servers, name, d.qtype)
	if err != nil {
		return nil, err
	}
	var out []string
	switch d.qtype {
	case dns.TypeA:
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				out = append(out, net.JoinHostPort(a.A.String(), strconv.Itoa(d.port)))
			}
		}
	case dns.TypeSRV:
		glue := map[string][]net.IP{}
		for _, rr := range resp.Extra {
			if a, ok := rr.(*dns.A); ok {
				glue[strings.ToLower(a.Hdr.Name)] = append(glue[strings.ToLower(a.Hdr.Name)], a.A)
			}
		}
		for _, rr := range resp.Answer {
			srv, ok := rr.(*dns.SRV)
			if !ok {
				continue
			}
			port := strconv.Itoa(int(srv.Port))
			ips := glue[strings.ToLower(srv.Target)]
			if len(ips) == 0 {
				ips, err = resolveA(ctx, servers, srv.Target)
				if err != nil {
					return nil, fmt.Errorf("SRV %s points at %s: %w", name, srv.Target, err)
				}
			}
			for _, ip := range ips {
				out = append(out, net.JoinHostPort(ip.String(), port))
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func resolveA(ctx context.Context, servers []string, name string) ([]net.IP, error) {
	if ip := net.ParseIP(strings.TrimSuffix(name, ".")); ip != nil {
		return []net.IP{ip}, nil
	}
	resp, err := exchange(ctx, servers, name, dns.TypeA)
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, rr := range resp.Answer {
		if a, ok := rr.(*dns.A); ok {
			ips = append(ips, a.A)
		}
	}
	return ips, nil
}

// exchange asks each server in turn until one answers, retrying over TCP when the UDP
// answer is truncated. NXDOMAIN is an answer with no records, not an error.
func exchange(ctx context.Context, servers []string, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = true
	var errs []error
	for _, server := range servers {
		resp, err := exchangeOne(ctx, "udp", q, server)
		if err == nil && resp.Truncated {
			resp, err = exchangeOne(ctx, "tcp", q, server)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("query %s %s at %s: %w", dns.TypeToString[qtype], name, server, err))
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return resp, nil
		default:
			errs = append(errs, fmt.Errorf("query %s %s at %s: server answered %s", dns.TypeToString[qtype], name, server, dns.RcodeToString[resp.Rcode]))
		}
	}
	return nil, errors.Join(errs...)
}

func exchangeOne(ctx context.Context, network string, q *dns.Msg, server string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, dnsQueryTimeout)
	defer cancel()
	c := &dns.Client{Net: network, Timeout: dnsQueryTimeout}
	resp, _, err := c.ExchangeContext(ctx, q, server)
	return resp, err
}

// discover polls DNS discovery and joins the addresses it returns that are not alive
// members yet. Failures are logged once per change, not once per poll.
func (m *Membership) discover(ctx context.Context) {
	var st discoverState
	t := time.NewTicker(m.dns.interval)
	defer t.Stop()
	for {
		m.discoverOnce(ctx, &st)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// discoverState is what a discovery loop remembers between polls to log only changes.
type discoverState struct {
	lastErr  string
	targets  []string
	joinErrs map[string]string
}

func (m *Membership) discoverOnce(ctx context.Context, st *discoverState) {
	targets, err := m.dns.lookup(ctx)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		if msg := err.Error(); msg != st.lastErr {
			st.lastErr = msg
			m.log.Warn("DNS discovery found no peers; retrying every interval", "dns", m.dns.String(), "interval", m.dns.interval, "err", err)
		}
		return
	}
	if st.lastErr != "" {
		st.lastErr = ""
		m.log.Info("DNS discovery works again", "dns", m.dns.String())
	}
	if !slices.Equal(targets, st.targets) {
		st.targets = targets
		m.log.Info("DNS discovery found peers", "dns", m.dns.String(), "addresses", targets)
	}
	m.joinDiscovered(ctx, st, "DNS discovery", targets)
}

// joinDiscovered joins the targets that are not alive members yet. source names the
// discovery in log lines ("DNS discovery"); a join failure is logged again only when it
// changes.
func (m *Membership) joinDiscovered(ctx context.Context, st *discoverState, source string, targets []string) {
	known := map[string]bool{m.localAddress: true}
	for _, mem := range m.table.members() {
		if mem.Status == StatusAlive {
			known[mem.Address] = true
		}
	}
	if st.joinErrs == nil {
		st.joinErrs = map[string]string{}
	}
	for a := range st.joinErrs {
		if !slices.Contains(targets, a) {
			delete(st.joinErrs, a)
		}
	}
	for _, a := range targets {
		if known[a] || ctx.Err() != nil || m.left.Load() {
			continue
		}
		n, errs := m.join(ctx, []string{a})
		if n > 0 {
			delete(st.joinErrs, a)
			m.log.Info("joined a peer found by "+source, "address", a)
			continue
		}
		if err := errors.Join(errs...); err != nil && err.Error() != st.joinErrs[a] {
			st.joinErrs[a] = err.Error()
			m.log.Warn("cannot join a peer found by "+source+"; retrying every interval", "address", a, "err", err)
		}
	}
}

package checks

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/picket-dev/picket/internal/config"
)

// maxAnswersOutput bounds the answer values quoted in an output line.
const maxAnswersOutput = 256

// dnsProber queries a DNS server with miekg/dns.
type dnsProber struct {
	// resolvConf names the file whose first nameserver is queried when a check names no
	// server: /etc/resolv.conf outside tests.
	resolvConf string
}

// probe sends one query and judges the rcode and the answers. A truncated UDP reply is
// asked again over TCP.
func (p dnsProber) probe(ctx context.Context, c *config.Check) Result {
	q := c.DNS
	if q == nil {
		return missingBlock(config.TypeDNS, "name: example.com, type: A")
	}
	name := strings.TrimSpace(q.Name)
	if _, ok := dns.IsDomainName(name); name == "" || !ok {
		return failf(ReasonConfig, "name %q is not a domain name", q.Name)
	}
	qtype := dns.TypeA
	if q.Type != "" {
		t, ok := dns.StringToType[strings.ToUpper(strings.TrimSpace(q.Type))]
		if !ok {
			return failf(ReasonConfig, "type %q is not a DNS record type (use A, AAAA, CNAME, MX, TXT, SRV, NS, ...)", q.Type)
		}
		qtype = t
	}
	rcode := dns.RcodeSuccess
	if q.ExpectRcode != "" {
		rc, ok := dns.StringToRcode[strings.ToUpper(strings.TrimSpace(q.ExpectRcode))]
		if !ok {
			return failf(ReasonConfig, "expect_rcode %q is not a DNS rcode (use NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)", q.ExpectRcode)
		}
		rcode = rc
	}
	proto := strings.ToLower(q.Protocol)
	switch proto {
	case "":
		proto = "udp"
	case "udp", "tcp":
	default:
		return failf(ReasonConfig, "protocol %q is not udp or tcp", q.Protocol)
	}
	server, err := p.server(q.Server)
	if err != nil {
		return failf(ReasonConfig, "%v", err)
	}

	msg := new(dns.Msg)
	msg.SetQuestion(dns.Fqdn(name), qtype)
	var tm timings
	resp, err := dnsExchange(ctx, proto, server, msg, &tm)
	if err == nil && resp.Truncated && proto == "udp" {
		resp, err = dnsExchange(ctx, "tcp", server, msg, &tm)
	}
	if err != nil {
		r := failf(reasonOf(err), "query %s %s at %s over %s: %v", name, dns.TypeToString[qtype], server, proto, err)
		r.Phases = tm.phases()
		return r
	}

	r := Result{Status: Passing, Phases: tm.phases()}
	values := make([]string, len(resp.Answer))
	for i, rr := range resp.Answer {
		values[i] = strings.TrimPrefix(rr.String(), rr.Header().String())
	}
	got := dns.RcodeToString[resp.Rcode]
	if got == "" {
		got = "rcode " + strconv.Itoa(resp.Rcode)
	}
	if resp.Rcode != rcode {
		r.Status, r.Reason = Critical, ReasonStatus
		r.Output = fmt.Sprintf("%s, want %s (%s)", got, dns.RcodeToString[rcode], answersOutput(values))
		return r
	}
	for _, want := range q.ExpectAnswers {
		found := false
		for _, v := range values {
			if strings.Contains(v, want) {
				found = true
				break
			}
		}
		if !found {
			r.Status, r.Reason = Critical, ReasonBody
			r.Output = fmt.Sprintf("%s, but no answer contains %s (%s)", got, quoteCut(want, 64), answersOutput(values))
			return r
		}
	}
	r.Output = got + ", " + answersOutput(values)
	return r
}

// dnsExchange dials the server and sends msg, recording connect and processing into tm.
func dnsExchange(ctx context.Context, proto, server string, msg *dns.Msg, tm *timings) (*dns.Msg, error) {
	var d net.Dialer
	nc, err := dialTimed(ctx, &d, proto, server, tm)
	if err != nil {
		return nil, err
	}
	conn := &dns.Conn{Conn: nc}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	client := &dns.Client{Net: proto, Timeout: time.Hour} // the context's deadline rules, not the 2s default
	start := time.Now()
	resp, _, err := client.ExchangeWithConnContext(ctx, msg, conn)
	tm.add(phaseProcessing, time.Since(start))
	return resp, err
}

// server returns host:port of the server to ask: the configured one (port 53 when it has
// none), else the first nameserver of the resolv.conf file.
func (p dnsProber) server(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		cfg, err := dns.ClientConfigFromFile(p.resolvConf)
		if err != nil {
			return "", fmt.Errorf("no server set and %s is unreadable: %w (set dns.server to host:port)", p.resolvConf, err)
		}
		if len(cfg.Servers) == 0 {
			return "", fmt.Errorf("no server set and %s names no nameserver (set dns.server to host:port)", p.resolvConf)
		}
		return net.JoinHostPort(cfg.Servers[0], cfg.Port), nil
	}
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	if strings.HasPrefix(s, "[") || strings.Contains(s, "/") {
		return "", fmt.Errorf("server %q is not host:port (use an address like 127.0.0.1:53)", s)
	}
	return net.JoinHostPort(s, "53"), nil
}

// answersOutput lists answer values for an output line, cut to maxAnswersOutput bytes.
func answersOutput(values []string) string {
	switch len(values) {
	case 0:
		return "no answers"
	case 1:
		return "1 answer: " + cutString(values[0], maxAnswersOutput)
	}
	return strconv.Itoa(len(values)) + " answers: " + cutString(strings.Join(values, ", "), maxAnswersOutput)
}

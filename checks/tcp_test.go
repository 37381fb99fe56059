package checks

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func tcpCheck(t config.TCPCheck) *config.Check {
	return &config.Check{Name: "port", Type: config.TypeTCP, TCP: &t}
}

// serveTCP starts a loopback server whose connections are handled by handle.
func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	return serveConns(t, listenTCP(t), handle)
}

func TestTCP(t *testing.T) {
	// A Redis-like server: answers PING line by line, the reply split over two writes.
	pong := serveTCP(t, func(c net.Conn) {
		rd := bufio.NewReader(c)
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			if strings.TrimSpace(line) == "PING" {
				io.WriteString(c, "+PO")
				time.Sleep(10 * time.Millisecond) // a reply in two segments, not synchronisation
				io.WriteString(c, "NG\r\n")
			} else {
				io.WriteString(c, "-ERR unknown command\r\n")
			}
		}
	})
	banner := serveTCP(t, func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n") })
	silent := serveTCP(t, func(c net.Conn) { io.Copy(io.Discard, c) }) // never answers
	flood := serveTCP(t, func(c net.Conn) {
		chunk := []byte(strings.Repeat("z", 4096))
		for {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	refused := closedPort(t)
	_, port, _ := net.SplitHostPort(banner)

	tests := []struct {
		name    string
		check   config.TCPCheck
		timeout time.Duration
		status  Status
		reason  string
		output  []string
		phases  string
	}{
		{"connect", config.TCPCheck{Address: banner}, time.Second, Passing, ReasonNone, []string{"connected in "}, "connect"},
		{"by name", config.TCPCheck{Address: "localhost:" + port}, time.Second, Passing, ReasonNone, []string{"connected in "}, "dns,connect"},
		{"banner", config.TCPCheck{Address: banner, Expect: "SSH-2.0"}, time.Second, Passing, ReasonNone, nil, "connect"},
		{"send expect", config.TCPCheck{Address: pong, Send: "PING\r\n", Expect: "+PONG"}, time.Second, Passing, ReasonNone, nil, "connect"},
		{"send only", config.TCPCheck{Address: pong, Send: "PING\r\n"}, time.Second, Passing, ReasonNone, nil, "connect"},
		{"wrong reply", config.TCPCheck{Address: pong, Send: "HELLO\r\n", Expect: "+PONG"}, time.Second, Critical, ReasonBody, []string{`does not contain "+PONG"`, "-ERR unknown"}, "connect"},
		{"closed before match", config.TCPCheck{Address: banner, Expect: "SMTP"}, time.Second, Critical, ReasonBody, []string{"SSH-2.0"}, "connect"},
		{"bounded read", config.TCPCheck{Address: flood, Expect: "never"}, 5 * time.Second, Critical, ReasonBody, []string{"zzz"}, "connect"},
		{"no reply", config.TCPCheck{Address: silent, Send: "hi\n", Expect: "hello"}, 300 * time.Millisecond, Critical, ReasonTimeout, []string{"timeout after 300ms"}, ""},
		{"refused", config.TCPCheck{Address: refused}, time.Second, Critical, ReasonConnect, []string{"connection refused"}, ""},
		{"no port", config.TCPCheck{Address: "127.0.0.1"}, time.Second, Critical, ReasonConfig, []string{"host:port"}, ""},
		{"empty", config.TCPCheck{}, time.Second, Critical, ReasonConfig, nil, ""},
	}
	probe := Probers()[config.TypeTCP]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runWith(t, probe, tcpCheck(tt.check), tt.timeout)
			expect(t, r, tt.status, tt.reason, tt.output...)
			if tt.phases != "" && phaseNamesOf(r) != tt.phases {
				t.Errorf("phases %s, want %s", phaseNamesOf(r), tt.phases)
			}
		})
	}
}

// BenchmarkTCPProbe measures one connect-only probe of a local listener.
func BenchmarkTCPProbe(b *testing.B) {
	addr := serveTCP(b, func(net.Conn) {})
	probe := Probers()[config.TypeTCP]
	c := tcpCheck(config.TCPCheck{Address: addr})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.ReportAllocs()
	for b.Loop() {
		if r := probe(ctx, c); r.Status != Passing {
			b.Fatalf("probe failed: %s", r.Output)
		}
	}
}

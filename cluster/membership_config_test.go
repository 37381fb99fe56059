package cluster

import (
	"net"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
	"github.com/picket-dev/picket/internal/config"
)

func TestSetAddresses(t *testing.T) {
	tests := []struct {
		bind, advertise string
		wantBind        string
		wantBindPort    int
		wantAdv         string
		wantAdvPort     int
		wantErr         string
	}{
		{"", "", "0.0.0.0", 7946, "", 7946, ""},
		{"127.0.0.1:0", "", "127.0.0.1", 0, "", 0, ""},
		{":7000", "", "0.0.0.0", 7000, "", 7000, ""},
		{"localhost:7000", "", "127.0.0.1", 7000, "", 7000, ""},
		{"0.0.0.0:7946", "10.1.2.3", "0.0.0.0", 7946, "10.1.2.3", 7946, ""},
		{"0.0.0.0:7946", "10.1.2.3:8000", "0.0.0.0", 7946, "10.1.2.3", 8000, ""},
		{"[::1]:7946", "", "::1", 7946, "", 7946, ""},
		{"[::]:7946", "", "", 0, "", 0, "set cluster.advertise"},
		{"127.0.0.1", "", "", 0, "", 0, "not host:port"},
		{"127.0.0.1:99999", "", "", 0, "", 0, "0 to 65535"},
		{"0.0.0.0:7946", "0.0.0.0", "", 0, "", 0, "not a reachable address"},
		{"0.0.0.0:7946", "10.1.2.3:0", "", 0, "", 0, "1 to 65535"},
		{"no-such-host.invalid:7946", "", "", 0, "", 0, "cluster.bind"},
	}
	for _, tt := range tests {
		c := memberlist.DefaultLANConfig()
		_, err := setAddresses(c, tt.bind, tt.advertise)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("setAddresses(%q, %q) = %v, want an error with %q", tt.bind, tt.advertise, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("setAddresses(%q, %q): %v", tt.bind, tt.advertise, err)
			continue
		}
		if c.BindAddr != tt.wantBind || c.BindPort != tt.wantBindPort || c.AdvertiseAddr != tt.wantAdv || c.AdvertisePort != tt.wantAdvPort {
			t.Errorf("setAddresses(%q, %q) = bind %s:%d advertise %q:%d, want %s:%d %q:%d", tt.bind, tt.advertise,
				c.BindAddr, c.BindPort, c.AdvertiseAddr, c.AdvertisePort, tt.wantBind, tt.wantBindPort, tt.wantAdv, tt.wantAdvPort)
		}
	}
}

func TestCheckSecurity(t *testing.T) {
	const key = "cGlja2V0LXRlc3Qta2V5IQ=="
	loop, all := net.ParseIP("127.0.0.1"), net.IPv4zero
	tests := []struct {
		name         string
		cfg          config.Cluster
		bind         net.IP
		wantKey      bool
		wantInsecure bool
		wantErr      string
	}{
		{"key", config.Cluster{Key: key}, all, true, false, ""},
		{"bad key", config.Cluster{Key: "eA=="}, all, false, false, "cluster.key"},
		{"no key on loopback", config.Cluster{}, loop, false, false, ""},
		{"no key on a reachable address", config.Cluster{}, all, false, false, "cluster.insecure: true"},
		{"insecure on a reachable address", config.Cluster{Insecure: true}, all, false, true, ""},
		{"insecure on loopback: no warning", config.Cluster{Insecure: true}, loop, false, false, ""},
	}
	for _, tt := range tests {
		k, insecure, err := checkSecurity(tt.cfg, tt.bind)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.name, err, tt.wantErr)
			}
			continue
		}
		if err != nil || (k != nil) != tt.wantKey || insecure != tt.wantInsecure {
			t.Errorf("%s: key %v, insecure %v, err %v; want key %v insecure %v", tt.name, k != nil, insecure, err, tt.wantKey, tt.wantInsecure)
		}
	}
}

func TestInsecureWarningIsLogged(t *testing.T) {
	c := testConfig()
	c.Bind = "0.0.0.0:0"
	c.Advertise = "127.0.0.1" // no private address is needed on the test machine
	c.Insecure = true
	n := newNode(t, "open", c, Meta{})
	if !strings.Contains(n.logs.String(), "level=WARN msg=\"GOSSIP IS NOT ENCRYPTED") {
		t.Errorf("no loud warning for insecure gossip on 0.0.0.0:\n%s", n.logs)
	}
	if got := n.m.LocalNode().Address; !strings.HasPrefix(got, "127.0.0.1:") || strings.HasSuffix(got, ":0") {
		t.Errorf("advertised address = %q, want 127.0.0.1 with the bound port", got)
	}
	quiet := newNode(t, "loop", testConfig(), Meta{})
	if strings.Contains(quiet.logs.String(), "NOT ENCRYPTED") {
		t.Errorf("warned about loopback-only gossip:\n%s", quiet.logs)
	}
}

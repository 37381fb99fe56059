package e2e

import (
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMDNSProcesses runs real agents with mDNS discovery and no seeds on loopback (an agent
// that advertises 127.0.0.1 announces and browses on the loopback interface, on the real
// port 5353 shared with other mDNS software): three of one cluster find each other and elect
// an aggregator; an agent of another cluster, announcing the same service, is not joined.
// The service type and cluster name are unique to the run, so other runs on the same
// machine stay apart.
func TestMDNSProcesses(t *testing.T) {
	if why := loopbackMulticast(); why != "" {
		t.Skipf("multicast does not work on the loopback interface here (%s)", why)
	}
	tag := fmt.Sprintf("%x", uint32(os.Getpid())^uint32(time.Now().UnixNano()))
	service := "_p" + tag + "._tcp"
	cluster := "mdns-" + tag
	start := func(name, clusterName string) *node {
		return startNodeWith(t, name, func(p nodePorts, dataDir string) string {
			return fmt.Sprintf(clusterNodeConfig, name, dataDir, p.http, clusterName, p.gossip, p.rpc, testKey,
				"discovery: {mdns: {enabled: true, service: "+service+"}}")
		})
	}
	began := time.Now()
	n1 := start("n1", cluster)
	n2 := start("n2", cluster)
	n3 := start("n3", cluster)
	waitAllAlive(t, "three alive members found by mDNS", n1, n2, n3)
	t.Logf("formation by mDNS: 3 members alive after %s", time.Since(began).Round(time.Millisecond))
	eventually(t, 20*time.Second, "an aggregator", func() error {
		out, err := n3.cli(t, "leader")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "n1") && !strings.Contains(out, "n2") && !strings.Contains(out, "n3") {
			return fmt.Errorf("picket leader: %q", out)
		}
		return nil
	})

	other := start("other", cluster+"-x")
	eventually(t, 20*time.Second, "both sides to see the agent of the other cluster and skip it", func() error {
		for _, n := range []*node{n1, other} {
			if !strings.Contains(n.p.out.String(), "mDNS found an agent of another cluster") {
				return fmt.Errorf("%s has not logged the other cluster yet", n.name)
			}
		}
		return nil
	})
	if st, err := n1.members(t); err != nil || len(st) != 3 {
		t.Errorf("n1 sees %v (%v), want n1-n3 only", st, err)
	}
	if st, err := other.members(t); err != nil || len(st) != 1 {
		t.Errorf("the agent of the other cluster sees %v (%v), want itself only", st, err)
	}
	for _, n := range []*node{n1, n2, n3, other} {
		if strings.Contains(n.p.out.String(), "cannot join a peer found by mDNS") {
			t.Errorf("%s tried to join a peer across clusters", n.name)
		}
	}
}

// loopbackMulticast says why a multicast datagram sent on the loopback interface does not
// reach a socket that joined the group there, or "" when it does.
func loopbackMulticast() string {
	ifis, err := net.Interfaces()
	if err != nil {
		return err.Error()
	}
	var lo *net.Interface
	for _, ifi := range ifis {
		if ifi.Flags&net.FlagLoopback != 0 && ifi.Flags&net.FlagUp != 0 {
			lo = &ifi
			break
		}
	}
	if lo == nil {
		return "no loopback interface"
	}
	group := &net.UDPAddr{IP: net.IPv4(224, 0, 0, 251), Port: 0}
	rx, err := net.ListenMulticastUDP("udp4", lo, group)
	if err != nil {
		return "join: " + err.Error()
	}
	defer rx.Close()
	group.Port = rx.LocalAddr().(*net.UDPAddr).Port
	tx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
	if err != nil {
		return err.Error()
	}
	defer tx.Close()
	rc, err := tx.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInet4Addr(int(fd), syscall.IPPROTO_IP, syscall.IP_MULTICAST_IF, [4]byte{127, 0, 0, 1})
	}); err != nil || serr != nil {
		return fmt.Sprintf("IP_MULTICAST_IF: %v %v", err, serr)
	}
	rx.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16)
	for range 3 {
		if _, err := tx.WriteToUDP([]byte("probe"), group); err != nil {
			return "send: " + err.Error()
		}
		if n, _, err := rx.ReadFromUDP(buf); err == nil && string(buf[:n]) == "probe" {
			return ""
		}
	}
	return "nothing received"
}

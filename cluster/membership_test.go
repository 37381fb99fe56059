package cluster

import (
	"context"
	"errors"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/config"
)

func TestClusterForms(t *testing.T) {
	cfg := testConfig()
	first := startNode(t, "n1", cfg, Meta{Roles: []string{"voter"}, Tags: map[string]string{"zone": "a"}, RPCAddr: "127.0.0.1:7947"})
	nodes := []*testNode{first}
	for _, name := range []string{"n2", "n3", "n4"} {
		c := cfg
		c.Join = []string{first.m.LocalNode().Address}
		nodes = append(nodes, startNode(t, name, c, Meta{}))
	}
	waitConverged(t, nodes, 10*time.Second)

	for _, n := range nodes {
		local := n.m.LocalNode()
		host, port, err := net.SplitHostPort(local.Address)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("%s: LocalNode().Address = %q, want 127.0.0.1 with the bound port", n.name, local.Address)
		}
		seen, ok := memberByName(nodes[3].m, n.name)
		if !ok || seen.Address != local.Address {
			t.Errorf("n4 sees %s at %q, want %q", n.name, seen.Address, local.Address)
		}
	}
	got, _ := memberByName(nodes[2].m, "n1")
	if !slices.Equal(got.Meta.Roles, []string{"voter"}) || got.Meta.Tags["zone"] != "a" || got.Meta.RPCAddr != "127.0.0.1:7947" || got.Meta.Version == "" {
		t.Errorf("n3 sees n1's meta as %+v, want roles [voter], tags zone=a, rpc 127.0.0.1:7947 and a version", got.Meta)
	}
}

func TestSeedJoinRetriesUntilTheSeedStarts(t *testing.T) {
	// Reserve a port for the seed, then start the joiner before the seed exists.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	seedAddr := l.Addr().String()
	_ = l.Close()

	c := testConfig()
	c.Join = []string{seedAddr}
	joiner := startNode(t, "joiner", c, Meta{})
	waitFor(t, 5*time.Second, "a failed join attempt to be logged", func() bool {
		return joiner.logs.count("cannot join the cluster yet") > 0
	})

	sc := testConfig()
	sc.Bind = seedAddr
	seed := startNode(t, "seed", sc, Meta{})
	waitConverged(t, []*testNode{joiner, seed}, 10*time.Second)
	if joiner.logs.count("joined the cluster") != 1 {
		t.Errorf("want exactly one 'joined the cluster' log line, log:\n%s", joiner.logs)
	}
}

func TestMetaUpdatePropagates(t *testing.T) {
	nodes := startCluster(t, 3, testConfig())
	events := record(t, nodes[0].m)

	if err := nodes[1].m.UpdateMeta(func(m *Meta) { m.Load = 0.75 }); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{nodes[0], nodes[2]} {
		waitFor(t, 5*time.Second, n.name+" to see n2's load 0.75", func() bool {
			mem, ok := memberByName(n.m, "n2")
			return ok && math.Abs(mem.Meta.Load-0.75) < 1e-9
		})
	}
	waitFor(t, 2*time.Second, "an update event about n2's load on n1", func() bool {
		ev, ok := events.find(EventUpdate, "n2")
		return ok && strings.Contains(ev.Detail, "load")
	})
	if got := nodes[1].m.LocalNode().Meta.Load; got != 0.75 {
		t.Errorf("n2's LocalNode().Meta.Load = %v, want 0.75", got)
	}

	big := map[string]string{}
	for i := range 40 {
		big["tag-"+strconv.Itoa(i)] = strings.Repeat("x", 10)
	}
	err := nodes[1].m.UpdateMeta(func(m *Meta) { m.Tags = big })
	if !errors.Is(err, ErrMetaTooLarge) {
		t.Errorf("UpdateMeta with 40 tags = %v, want ErrMetaTooLarge", err)
	}
	if tags := nodes[1].m.LocalNode().Meta.Tags; len(tags) != 0 {
		t.Errorf("after a refused update the local tags are %v, want the previous (none)", tags)
	}
}

func TestCrashedNodeIsDeclaredDead(t *testing.T) {
	nodes := startCluster(t, 3, testConfig())
	events := record(t, nodes[0].m)

	start := time.Now()
	if err := nodes[2].m.Close(); err != nil { // no leave: looks like a crash to the others
		t.Fatal(err)
	}
	limit := DetectionTime(ProfileFast) + 2*time.Second
	waitFor(t, limit, "n1 to get a fail event for n3", func() bool {
		_, ok := events.find(EventFail, "n3")
		return ok
	})
	t.Logf("n3 declared dead after %s (DetectionTime(fast) = %s)", time.Since(start).Round(time.Millisecond), DetectionTime(ProfileFast))
	if _, ok := events.find(EventLeave, "n3"); ok {
		t.Error("a crashed node was reported as having left")
	}
	for _, n := range nodes[:2] {
		waitFor(t, limit, n.name+" to list n3 as dead", func() bool {
			mem, ok := memberByName(n.m, "n3")
			return ok && mem.Status == StatusDead
		})
	}
	if _, err := nodes[0].m.Ping(context.Background(), "n3"); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("Ping(dead n3) = %v, want ErrUnknownMember", err)
	}
}

func TestGracefulLeave(t *testing.T) {
	nodes := startCluster(t, 3, testConfig())
	events := record(t, nodes[0].m)

	if err := nodes[2].m.Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	waitFor(t, 3*time.Second, "n1 to get a leave event for n3", func() bool {
		_, ok := events.find(EventLeave, "n3")
		return ok
	})
	if _, ok := events.find(EventFail, "n3"); ok {
		t.Error("a node that left gracefully was reported as failed")
	}
	waitFor(t, 3*time.Second, "n2 to list n3 as left", func() bool {
		mem, ok := memberByName(nodes[1].m, "n3")
		return ok && mem.Status == StatusLeft
	})
	if got := nodes[2].m.LocalNode().Status; got != StatusLeft {
		t.Errorf("n3's own status after Leave = %q, want left", got)
	}
	if _, err := nodes[2].m.Join([]string{nodes[0].m.LocalNode().Address}); !errors.Is(err, ErrLeft) {
		t.Errorf("Join after Leave = %v, want ErrLeft", err)
	}
	if err := nodes[2].m.Leave(time.Second); err != nil {
		t.Errorf("second Leave = %v, want nil", err)
	}
}

func TestRunLeavesWhenContextEnds(t *testing.T) {
	nodes := startCluster(t, 2, testConfig())
	events := record(t, nodes[0].m)
	nodes[1].stop() // cancels Run: graceful leave, then shutdown
	waitFor(t, 3*time.Second, "n1 to get a leave event for n2", func() bool {
		_, ok := events.find(EventLeave, "n2")
		return ok
	})
}

func TestPing(t *testing.T) {
	nodes := startCluster(t, 2, testConfig())
	rtt, err := nodes[0].m.Ping(context.Background(), "n2")
	if err != nil || rtt <= 0 || rtt > time.Second {
		t.Errorf("Ping(n2) = %v, %v; want a positive RTT under 1s", rtt, err)
	}
	if _, err := nodes[0].m.Ping(context.Background(), "nobody"); !errors.Is(err, ErrUnknownMember) {
		t.Errorf("Ping(nobody) = %v, want ErrUnknownMember", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := nodes[0].m.Ping(ctx, "n2"); err == nil {
		// The ping may win the race against the cancelled context; both outcomes are fine,
		// but a cancelled context must never hang.
		t.Log("ping answered before the cancelled context was noticed")
	}
}

func TestIntrudersCannotJoin(t *testing.T) {
	const key = "cGlja2V0LXRlc3Qta2V5IQ=="      // 16 bytes
	const otherKey = "b3RoZXItY2x1c3Rlci1rIQ==" // 16 bytes
	keyed := testConfig()
	keyed.Key = key
	nodes := startCluster(t, 2, keyed)
	seed := nodes[0].m.LocalNode().Address

	tests := []struct {
		name      string
		mod       func(*config.Cluster)
		joinerWhy string // in the joiner's error
		seedWhy   string // in the seed's log
	}{
		{
			name:      "wrong key",
			mod:       func(c *config.Cluster) { c.Key = otherKey },
			joinerWhy: "encrypted with a key this agent does not have",
			seedWhy:   "encrypted with a key this agent does not have",
		},
		{
			name:      "no key",
			mod:       func(c *config.Cluster) { c.Key = "" },
			joinerWhy: "this agent has none",
			seedWhy:   "the peer sends unencrypted gossip",
		},
		{
			name:      "other cluster name",
			mod:       func(c *config.Cluster) { c.Name = "other" },
			joinerWhy: "another cluster",
			seedWhy:   "another cluster",
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := keyed
			tt.mod(&c)
			name := "intruder" + strconv.Itoa(i)
			intruder := newNode(t, name, c, Meta{})
			before := nodes[0].logs.count("refused gossip")

			n, err := intruder.m.Join([]string{seed})
			if err == nil || n != 0 {
				t.Fatalf("Join = %d, %v; want 0 and an error", n, err)
			}
			if !strings.Contains(err.Error(), tt.joinerWhy) {
				t.Errorf("Join error = %q, want it to say %q", err, tt.joinerWhy)
			}
			if !strings.Contains(intruder.logs.String(), "level=WARN msg=\"join failed\"") {
				t.Errorf("the joiner did not log the failure at warn:\n%s", intruder.logs)
			}
			waitFor(t, 2*time.Second, "the seed to log why it refused "+name, func() bool {
				return nodes[0].logs.count("refused gossip") > before
			})
			var refusedLine string
			for line := range strings.SplitSeq(nodes[0].logs.String(), "\n") {
				if strings.Contains(line, "refused gossip") {
					refusedLine = line
				}
			}
			if !strings.Contains(refusedLine, "level=WARN") || !strings.Contains(refusedLine, tt.seedWhy) {
				t.Errorf("seed's refusal log line = %q, want level WARN and %q", refusedLine, tt.seedWhy)
			}

			// The intruder must never show up, on any side.
			deadline := time.Now().Add(DetectionTime(ProfileFast))
			for time.Now().Before(deadline) {
				for _, node := range nodes {
					if _, ok := memberByName(node.m, name); ok {
						t.Fatalf("%s lists the intruder %s", node.name, name)
					}
				}
				time.Sleep(50 * time.Millisecond)
			}
			if got := aliveNames(intruder.m); !slices.Equal(got, []string{name}) {
				t.Errorf("the intruder sees %v, want only itself", got)
			}
		})
	}
	waitConverged(t, nodes, time.Second)
}

func TestKeyRotation(t *testing.T) {
	const k1 = "cGlja2V0LXRlc3Qta2V5IQ=="
	const k2 = "c2Vjb25kLWtleS1mb3Itcm90YXRpb24tMzJieXRlcyE=" // 32 bytes
	cfg := testConfig()
	cfg.Key = k1
	nodes := startCluster(t, 3, cfg)

	steps := []struct {
		name string
		do   func(*Membership) error
	}{
		{"install", func(m *Membership) error { return m.InstallKey(k2) }},
		{"use", func(m *Membership) error { return m.UseKey(k2) }},
		{"remove old", func(m *Membership) error { return m.RemoveKey(k1) }},
	}
	for i, step := range steps {
		for _, n := range nodes {
			if err := step.do(n.m); err != nil {
				t.Fatalf("%s on %s: %v", step.name, n.name, err)
			}
		}
		load := 0.2 * float64(i+1)
		if err := nodes[i].m.UpdateMeta(func(m *Meta) { m.Load = load }); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			waitFor(t, 5*time.Second, "traffic after "+step.name+": "+n.name+" sees the new load of "+nodes[i].name, func() bool {
				mem, ok := memberByName(n.m, nodes[i].name)
				return ok && math.Abs(mem.Meta.Load-load) < 1e-9
			})
		}
		waitConverged(t, nodes, 2*time.Second)
	}
	for _, n := range nodes {
		if got := n.m.ListKeys(); !slices.Equal(got, []string{k2}) {
			t.Errorf("%s keys = %v, want only the new key", n.name, got)
		}
	}

	newOnly := cfg
	newOnly.Key = k2
	newOnly.Join = []string{nodes[0].m.LocalNode().Address}
	newcomer := startNode(t, "n4", newOnly, Meta{})
	waitConverged(t, append(slices.Clone(nodes), newcomer), 10*time.Second)

	oldOnly := cfg
	oldOnly.Key = k1
	stale := newNode(t, "stale", oldOnly, Meta{})
	if n, err := stale.m.Join([]string{nodes[0].m.LocalNode().Address}); err == nil {
		t.Errorf("a node with only the removed key joined (%d contacted)", n)
	}
}

func TestKeyringErrors(t *testing.T) {
	const k1 = "cGlja2V0LXRlc3Qta2V5IQ=="
	const k2 = "b3RoZXItY2x1c3Rlci1rIQ=="
	cfg := testConfig()
	cfg.Key = k1
	keyed := newNode(t, "keyed", cfg, Meta{})
	plain := newNode(t, "plain", testConfig(), Meta{})

	tests := []struct {
		name string
		err  error
		want error
	}{
		{"remove primary", keyed.m.RemoveKey(k1), ErrPrimaryKey},
		{"use unknown", keyed.m.UseKey(k2), ErrKeyNotInstalled},
		{"remove unknown", keyed.m.RemoveKey(k2), ErrKeyNotInstalled},
		{"install bad", keyed.m.InstallKey("c2hvcnQ="), ErrBadKey},
		{"install without encryption", plain.m.InstallKey(k2), ErrNoKeyring},
	}
	for _, tt := range tests {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, tt.err, tt.want)
		}
	}
	if plain.m.ListKeys() != nil {
		t.Errorf("ListKeys without encryption = %v, want nil", plain.m.ListKeys())
	}
	if got := keyed.m.ListKeys(); !slices.Equal(got, []string{k1}) {
		t.Errorf("ListKeys = %v, want [%s]", got, k1)
	}
}

func TestConfigDrift(t *testing.T) {
	cfg := testConfig()
	n1 := startNode(t, "n1", cfg, Meta{ConfigHash: "aaa"})
	events := record(t, n1.m)
	cfg.Join = []string{n1.m.LocalNode().Address}
	n2 := startNode(t, "n2", cfg, Meta{ConfigHash: "aaa"})
	n3 := startNode(t, "n3", cfg, Meta{ConfigHash: "bbb"})
	waitConverged(t, []*testNode{n1, n2, n3}, 10*time.Second)

	waitFor(t, 2*time.Second, "a drift event on n1", func() bool { return len(events.ofType(EventDrift)) > 0 })
	drift := events.ofType(EventDrift)[0]
	if !strings.Contains(drift.Detail, "aaa on n1") || !strings.Contains(drift.Detail, "bbb on n3") {
		t.Errorf("drift detail = %q, want both hashes with their nodes", drift.Detail)
	}
	if !strings.Contains(n1.logs.String(), "level=WARN msg=\"configuration drift") {
		t.Errorf("drift was not logged at warn:\n%s", n1.logs)
	}

	// Same pair again (n3 changes something else): no new drift event. Then n3 converges
	// and drifts to a third hash: one new drift event.
	if err := n3.m.UpdateMeta(func(m *Meta) { m.Load = 0.9 }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 to see n3's load", func() bool {
		mem, _ := memberByName(n1.m, "n3")
		return mem.Meta.Load == 0.9
	})
	if got := len(events.ofType(EventDrift)); got != 1 {
		t.Errorf("%d drift events for one pair of hashes, want 1", got)
	}
	if err := n3.m.UpdateMeta(func(m *Meta) { m.ConfigHash = "aaa" }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "n1 to see n3 converge", func() bool {
		mem, _ := memberByName(n1.m, "n3")
		return mem.Meta.ConfigHash == "aaa"
	})
	if err := n3.m.UpdateMeta(func(m *Meta) { m.ConfigHash = "ccc" }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a second drift event", func() bool { return len(events.ofType(EventDrift)) == 2 })
	if d := events.ofType(EventDrift)[1].Detail; !strings.Contains(d, "ccc on n3") {
		t.Errorf("second drift detail = %q, want ccc on n3", d)
	}
}

func TestLifecycle(t *testing.T) {
	n := newNode(t, "solo", testConfig(), Meta{})
	ch, _ := n.m.Subscribe(1)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.m.Run(ctx) }()
	waitFor(t, 2*time.Second, "Run to start", func() bool { return n.m.running.Load() })
	if err := n.m.Run(ctx); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	if err := n.m.Close(); err != nil { // Close ends Run too
		t.Errorf("Close = %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after Close = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	cancel()
	if err := n.m.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
	if _, ok := <-ch; ok {
		t.Error("subscription channel still open after Close")
	}
	if err := n.m.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if err := n.m.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Errorf("Leave after Close = %v, want ErrClosed", err)
	}
	if _, err := n.m.Join([]string{"127.0.0.1:1"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Join after Close = %v, want ErrClosed", err)
	}
	if _, err := n.m.Ping(context.Background(), "solo"); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v, want ErrClosed", err)
	}
}

func TestNewMembershipErrors(t *testing.T) {
	taken := newNode(t, "taken", testConfig(), Meta{}).m.LocalNode().Address

	tests := []struct {
		name string
		mod  func(*config.Cluster)
		want []string
	}{
		{"port in use", func(c *config.Cluster) { c.Bind = taken }, []string{taken, "change cluster.bind"}},
		{"bad bind", func(c *config.Cluster) { c.Bind = "127.0.0.1" }, []string{"cluster.bind", "host:port"}},
		{"bad profile", func(c *config.Cluster) { c.Profile = "turbo" }, []string{"cluster.profile", "lan"}},
		{"bad key", func(c *config.Cluster) { c.Key = "bm90IGEga2V5" }, []string{"cluster.key", "16, 24 or 32"}},
		{"bad mdns service", func(c *config.Cluster) {
			c.Discovery.MDNS = config.MDNSDiscovery{Enabled: true, Service: "_" + strings.Repeat("x", 70) + "._tcp"}
		}, []string{"cluster.discovery.mdns", "not a valid DNS name"}},
		{"bad dns type", func(c *config.Cluster) { c.Discovery.DNS = config.DNSDiscovery{Name: "x.test", Type: "MX"} }, []string{"cluster.discovery.dns.type", "A or SRV"}},
		{"no key on a reachable address", func(c *config.Cluster) { c.Bind = "0.0.0.0:0" }, []string{"cluster.key is empty", "cluster.insecure"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig()
			tt.mod(&c)
			m, err := NewMembership(Options{Config: c, NodeName: "x"})
			if err == nil {
				_ = m.Close()
				t.Fatal("NewMembership succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestMDNSDiscoveryFormsCluster: three agents with mDNS discovery and no seeds, started
// one after the other, form one cluster; the later ones find the earlier ones.
func TestMDNSDiscoveryFormsCluster(t *testing.T) { mdnsModes(t, testMDNSDiscoveryFormsCluster) }

func testMDNSDiscoveryFormsCluster(t *testing.T, multicast bool) {
	nets := mdnsTestNets(t, 3, multicast)
	start := time.Now()
	n1 := startMDNSNode(t, "n1", testConfig(), nets[0])
	waitFor(t, 5*time.Second, "n1 to find nobody", func() bool {
		return n1.logs.count("mDNS discovery found no peers yet") == 1
	})
	n2 := startMDNSNode(t, "n2", testConfig(), nets[1])
	n3 := startMDNSNode(t, "n3", testConfig(), nets[2])
	nodes := []*testNode{n1, n2, n3}
	waitConverged(t, nodes, 15*time.Second)
	t.Logf("three agents found each other by mDNS in %s", time.Since(start).Round(time.Millisecond))
	joins := 0
	for _, n := range nodes {
		joins += n.logs.count("joined a peer found by mDNS discovery")
		if n.logs.count("cannot join") > 0 {
			t.Errorf("%s logged a failed join", n.name)
		}
	}
	if joins == 0 {
		t.Error("no agent logged a join through mDNS discovery")
	}

	// Once a member leaves, its responder stops answering: the others do not join it again.
	if err := n3.m.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
	gone := func() bool {
		return slices.Equal(aliveNames(n1.m), []string{"n1", "n2"}) && slices.Equal(aliveNames(n2.m), []string{"n1", "n2"})
	}
	waitFor(t, 10*time.Second, "n1 and n2 to see n3 gone", gone)
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if !gone() { // two browse intervals
			t.Fatalf("n3 is back after leaving: n1 sees %v, n2 sees %v", aliveNames(n1.m), aliveNames(n2.m))
		}
	}
}

// TestMDNSDiscoveryOtherCluster: an agent whose TXT record names another cluster is found
// but not joined, and it does not join either.
func TestMDNSDiscoveryOtherCluster(t *testing.T) { mdnsModes(t, testMDNSDiscoveryOtherCluster) }

func testMDNSDiscoveryOtherCluster(t *testing.T, multicast bool) {
	nets := mdnsTestNets(t, 3, multicast)
	n1 := startMDNSNode(t, "n1", testConfig(), nets[0])
	other := testConfig()
	other.Name = "other"
	x := startMDNSNode(t, "x", other, nets[1])
	n2 := startMDNSNode(t, "n2", testConfig(), nets[2])
	waitConverged(t, []*testNode{n1, n2}, 15*time.Second)
	waitFor(t, 10*time.Second, "each side to log the agent of the other cluster", func() bool {
		return x.logs.count("mDNS found an agent of another cluster") > 0 &&
			n1.logs.count("mDNS found an agent of another cluster") > 0 &&
			n2.logs.count("mDNS found an agent of another cluster") > 0
	})
	if got := aliveNames(x.m); !slices.Equal(got, []string{"x"}) {
		t.Errorf("x sees %v, want itself only", got)
	}
	for _, n := range []*testNode{n1, n2, x} {
		if _, ok := memberByName(n.m, "x"); ok && n != x {
			t.Errorf("%s knows x", n.name)
		}
		if c := n.logs.count("cannot join"); c > 0 {
			t.Errorf("%s tried to join across clusters (%d failed joins)", n.name, c)
		}
	}
}

func TestExplainJoinError(t *testing.T) {
	tests := []struct {
		memberlist string
		want       string
	}{
		{"failed to join 127.0.0.1:1: No installed keys could decrypt the message", "use the same cluster.key"},
		{"failed to join 127.0.0.1:1: remote state is encrypted and encryption is not configured", "set the cluster's cluster.key on this agent"},
		{"failed to join 127.0.0.1:1: encryption is configured but remote state is not encrypted", "set the cluster's cluster.key on the peer"},
		{"failed to join 127.0.0.1:1: EOF", "another cluster"},
		{"dial tcp 127.0.0.1:1: connect: connection refused", "nothing listens there"},
		{"dial tcp 10.0.0.1:7946: i/o timeout", "firewalls"},
	}
	for _, tt := range tests {
		got := explainJoinError("127.0.0.1:1", errors.New(tt.memberlist)).Error()
		if !strings.Contains(got, tt.want) || !strings.Contains(got, "127.0.0.1:1") || !strings.Contains(got, tt.memberlist) {
			t.Errorf("explainJoinError(%q) = %q, want the address, the cause and %q", tt.memberlist, got, tt.want)
		}
	}
}

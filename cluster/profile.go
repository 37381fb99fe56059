package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip timing profiles, chosen with cluster.profile.
const (
	ProfileLAN  = "lan"  // memberlist.DefaultLANConfig: detection in a few seconds
	ProfileWAN  = "wan"  // memberlist.DefaultWANConfig: tolerant of high latency
	ProfileFast = "fast" // sub-second probing for loopback and small quiet LANs (tests)
)

// ProfileNames lists the valid profile names.
func ProfileNames() []string { return []string{ProfileLAN, ProfileWAN, ProfileFast} }

// profileConfig returns a fresh memberlist configuration for the named profile ("" is lan).
func profileConfig(name string) (*memberlist.Config, error) {
	switch name {
	case ProfileLAN, "":
		return memberlist.DefaultLANConfig(), nil
	case ProfileWAN:
		return memberlist.DefaultWANConfig(), nil
	case ProfileFast:
		c := memberlist.DefaultLANConfig()
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 2 // with fewer than 2 expected confirmations, the minimum timeout applies
		c.SuspicionMaxTimeoutMult = 3
		c.GossipInterval = 50 * time.Millisecond
		c.GossipToTheDeadTime = 5 * time.Second
		c.PushPullInterval = 5 * time.Second
		c.TCPTimeout = time.Second
		c.DeadNodeReclaimTime = time.Second
		c.AwarenessMaxMultiplier = 4
		// Each broadcast goes out twice as often as with LAN defaults: when 50 agents join at
		// once, one that misses another's alive message otherwise learns of it only at the
		// next push-pull, 10 s later (P10 in bench/: 2 of 15 runs before, 0 of 30 after).
		c.RetransmitMult = 8
		return c, nil
	default:
		return nil, fmt.Errorf("cluster.profile %q is unknown: use one of %v", name, ProfileNames())
	}
}

// DetectionTime is the expected worst-case time for the cluster to declare a crashed node
// dead under the named profile ("" and unknown names mean lan), for clusters of up to ten
// nodes whose members answer probes normally:
//
//	2 probe intervals until some member probes the node, 1 more for the direct, indirect
//	and TCP probes to fail, the suspicion timeout (SuspicionMult × ProbeInterval), and
//	3 gossip intervals for the verdict to spread.
//
// Memberlist can take longer when the probing members are themselves degraded (their
// probe interval backs off up to AwarenessMaxMultiplier times) or, in clusters of four or
// more with lan/wan, when no other member confirms the suspicion (up to
// SuspicionMaxTimeoutMult times the suspicion timeout).
func DetectionTime(profile string) time.Duration {
	c, err := profileConfig(profile)
	if err != nil {
		c = memberlist.DefaultLANConfig()
	}
	return detectionTime(c)
}

func detectionTime(c *memberlist.Config) time.Duration {
	return 3*c.ProbeInterval + time.Duration(c.SuspicionMult)*c.ProbeInterval + 3*c.GossipInterval
}

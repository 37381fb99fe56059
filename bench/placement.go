package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
)

// P9 workload shape.
const (
	rehomeChecks   = 6                      // cluster checks per run
	rehomeInterval = time.Second            // their interval
	rehomeTimeout  = 500 * time.Millisecond // their timeout
	rehomePoll     = 20 * time.Millisecond  // how often the bench looks
)

// RehomeResult is one MeasureRehome run.
type RehomeResult struct {
	Victim    string        // the agent killed
	WasLeader bool          // it was the aggregator
	Moved     int           // checks that ran on it
	Detect    time.Duration // from SIGKILL until a survivor lists it dead
	Rehome    time.Duration // from SIGKILL until every moved check has passed on a survivor
}

// MeasureRehome registers rehomeChecks cluster checks against target (host:port of the
// bench target) through c's first agent, waits until each passes where it is placed, then
// kills (SIGKILL) the busiest agent of the role asked (the aggregator or another; the
// busiest of all when that role runs no check) and
// times, from a survivor's API, its failure detection and the re-homing of its checks: each
// placed on survivors only and with a passing result, run after the kill, from a node that
// is not the victim.
func MeasureRehome(ctx context.Context, c *PicketCluster, target string, killLeader bool) (RehomeResult, error) {
	var res RehomeResult
	for i := range rehomeChecks {
		name := fmt.Sprintf("rehome-%d", i)
		body, err := json.Marshal(map[string]any{
			"name": name, "type": "http", "placement": "cluster",
			"interval": rehomeInterval.String(), "timeout": rehomeTimeout.String(),
			"http": map[string]any{"url": "http://" + target + "/c/" + name},
		})
		if err != nil {
			return res, err
		}
		var last string
		err = pollUntil(ctx, 20*time.Second, func() bool {
			status, out, err := c.post(ctx, c.Nodes[0], "/v1/checks", nil, body)
			if err == nil && status == http.StatusOK {
				return true
			}
			last = fmt.Sprintf("%d %s %v", status, out, err)
			return false
		})
		if err != nil {
			return res, fmt.Errorf("POST /v1/checks %s: %w (last answer: %s)", name, err, last)
		}
	}
	var checks []api.Check
	var why string
	err := pollUntil(ctx, 30*time.Second, func() bool {
		checks, why = placedChecks(ctx, c, c.Nodes[0], "", time.Time{}, nil)
		return why == ""
	})
	if err != nil {
		return res, fmt.Errorf("cluster checks not placed and passing: %w (%s)", err, why)
	}
	leader, err := c.Leader(ctx)
	if err != nil {
		return res, err
	}
	load := map[string]int{}
	for _, ch := range checks {
		for _, n := range ch.Nodes {
			load[n]++
		}
	}
	busiest := func(ok func(*picketNode) bool) *picketNode {
		var v *picketNode
		for _, n := range c.Nodes {
			if ok(n) && (v == nil || load[n.Name] > load[v.Name]) {
				v = n
			}
		}
		return v
	}
	victim := busiest(func(n *picketNode) bool { return (n == leader) == killLeader })
	if load[victim.Name] == 0 { // placement left that role without checks: kill the busiest agent
		victim = busiest(func(*picketNode) bool { return true })
	}
	res.Victim, res.WasLeader, res.Moved = victim.Name, victim == leader, load[victim.Name]
	moved := map[string]bool{}
	for _, ch := range checks {
		if slices.Contains(ch.Nodes, victim.Name) {
			moved[ch.Name] = true
		}
	}
	if res.Moved == 0 {
		return res, fmt.Errorf("no check placed on %s (placement %v): nothing would move", victim.Name, load)
	}
	var survivor *picketNode
	for _, n := range c.Nodes {
		if n != victim {
			survivor = n
			break
		}
	}

	killed := time.Now()
	c.Kill(victim)
	deadline := killed.Add(60 * time.Second)
	for res.Detect == 0 || res.Rehome == 0 {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("%s killed %s ago: detected after %s, re-homed after %s (0: not yet; last: %s)",
				victim.Name, time.Since(killed).Round(time.Millisecond), res.Detect, res.Rehome, why)
		}
		if res.Detect == 0 {
			var ms []api.Member
			if err := c.getJSON(ctx, survivor, "/v1/members", &ms); err == nil {
				for _, m := range ms {
					if m.Name == victim.Name && (m.Status == "dead" || m.Status == "left") {
						res.Detect = time.Since(killed)
					}
				}
			}
		}
		if res.Rehome == 0 {
			if _, why = placedChecks(ctx, c, survivor, victim.Name, killed, moved); why == "" {
				res.Rehome = time.Since(killed)
			}
		}
		if err := sleepCtx(ctx, rehomePoll); err != nil {
			return res, err
		}
	}
	return res, nil
}

// placedChecks reads GET /v1/checks of n and says why the rehome-* checks are not yet all
// placed away from dead, each with a passing result from every node it is placed on, run
// after after for the checks in moved; "" when they are.
func placedChecks(ctx context.Context, c *PicketCluster, n *picketNode, dead string, after time.Time, moved map[string]bool) ([]api.Check, string) {
	var all []api.Check
	if err := c.getJSON(ctx, n, "/v1/checks", &all); err != nil {
		return nil, err.Error()
	}
	var cs []api.Check
	for _, ch := range all {
		if strings.HasPrefix(ch.Name, "rehome-") {
			cs = append(cs, ch)
		}
	}
	if len(cs) != rehomeChecks {
		return cs, fmt.Sprintf("%d checks listed, want %d", len(cs), rehomeChecks)
	}
	for _, ch := range cs {
		if len(ch.Nodes) == 0 || slices.Contains(ch.Nodes, dead) {
			return cs, fmt.Sprintf("%s placed on %v", ch.Name, ch.Nodes)
		}
		for _, node := range ch.Nodes {
			i := slices.IndexFunc(ch.Results, func(r api.Result) bool { return r.Node == node })
			if i < 0 {
				return cs, fmt.Sprintf("%s: no result from %s yet", ch.Name, node)
			}
			r := ch.Results[i]
			if r.Status != "passing" || moved[ch.Name] && r.Time.Before(after) {
				return cs, fmt.Sprintf("%s: %s's result %s at %s", ch.Name, node, r.Status, r.Time.Format("15:04:05.000"))
			}
		}
	}
	return cs, ""
}

// Placement runs P9 for the fast profile (e.Plan.RehomeRuns runs) and the lan profile
// (e.Plan.RehomeRunsLAN runs): each run a fresh 3-agent picket cluster, the aggregator
// killed in every other run. The baseline is the failure-detection time of the same runs.
func (e *Env) Placement(ctx context.Context) ([]Row, error) {
	tp, addrs, err := StartTarget(ctx, e.Procs, e.Target)
	if err != nil {
		return nil, err
	}
	defer tp.Stop()
	var rows []Row
	for _, prof := range []struct {
		name string
		runs int
	}{{cluster.ProfileFast, e.Plan.RehomeRuns}, {cluster.ProfileLAN, e.Plan.RehomeRunsLAN}} {
		if prof.runs == 0 {
			continue
		}
		r, err := e.rehomeRuns(ctx, addrs.HTTP, prof.name, prof.runs)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// rehomeRuns measures n runs of MeasureRehome with profile and returns P9's rows for it.
func (e *Env) rehomeRuns(ctx context.Context, target, profile string, n int) ([]Row, error) {
	var detect, rehome, beyond []float64
	var runs []string
	for r := range n {
		killLeader := r%2 == 1
		role := "a non-aggregator"
		if killLeader {
			role = "the aggregator"
		}
		e.logf("P9 %s run %d/%d: 3 agents, %d cluster checks, kill -9 of %s", profile, r+1, n, rehomeChecks, role)
		dir, err := e.runDir("picket-rehome")
		if err != nil {
			return nil, err
		}
		c, err := startPicketCluster(ctx, e.Procs, e.Picket, dir, clusterSetup{Profile: profile})
		if err != nil {
			return nil, err
		}
		res, err := MeasureRehome(ctx, c, target, killLeader)
		_ = c.Close()
		if err != nil {
			return nil, fmt.Errorf("P9 %s run %d: %w", profile, r+1, err)
		}
		detect = append(detect, res.Detect.Seconds())
		rehome = append(rehome, res.Rehome.Seconds())
		beyond = append(beyond, (res.Rehome - res.Detect).Seconds())
		who := "follower"
		if res.WasLeader {
			who = "aggregator"
		}
		runs = append(runs, fmt.Sprintf("%s (%s, %d checks): detected %s s, re-homed %s s",
			res.Victim, who, res.Moved, Num(res.Detect.Seconds()), Num(res.Rehome.Seconds())))
	}
	row := Row{ID: "P9", Metric: fmt.Sprintf("check re-homing after a node dies, %s profile (baseline: failure detection, same runs)", profile), Unit: "s",
		Picket: Summarize(rehome), Baseline: Summarize(detect), Target: "≤ detection + 2 s"}
	row.Verdict = judge(slices.Max(beyond) <= 2)
	row.Note = fmt.Sprintf("%d runs, each a fresh cluster of 3 `picket agent` processes (profile %s, cluster.DetectionTime = %s), "+
		"%d HTTP cluster checks (interval %s, timeout %s) against the bench target registered with POST /v1/checks; once each passes "+
		"where placed, SIGKILL of the busiest agent, the aggregator in every other run (unless it runs none of them); a survivor's API polled every %s: detection = "+
		"GET /v1/members lists it dead, re-homed = GET /v1/checks places none of them on it and each has a passing result run after "+
		"the kill on every node it is placed on; judged on the worst run's re-homing minus detection; runs: %s",
		n, profile, cluster.DetectionTime(profile), rehomeChecks, rehomeInterval, rehomeTimeout, rehomePoll, strings.Join(runs, "; "))
	extra := Row{Metric: fmt.Sprintf("ref: re-homing minus detection, %s profile", profile), Unit: "s", Picket: Summarize(beyond), Verdict: Info}
	return []Row{row, extra}, nil
}

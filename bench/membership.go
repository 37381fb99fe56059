package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/config"
)

// MembershipResult is one MeasureMembership run.
type MembershipResult struct {
	Converge time.Duration // from every agent joining until each sees all n alive
	Detect   time.Duration // from closing one agent (no leave) until the first agent sees it dead
}

// MeasureMembership starts n gossip agents (package cluster, fast profile) on 127.0.0.1 in
// this process, all joining the first, and times their convergence; then it closes the
// last one without leaving and times its detection by the first.
func MeasureMembership(ctx context.Context, n int) (MembershipResult, error) {
	if n < 2 {
		return MembershipResult{}, errors.New("measure membership: need at least 2 agents")
	}
	cfg := config.Cluster{
		Name:              "bench",
		Bind:              "127.0.0.1:0",
		Profile:           cluster.ProfileFast,
		RetryJoinInterval: config.Duration(200 * time.Millisecond),
	}
	ms := make([]*cluster.Membership, 0, n)
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		var cw sync.WaitGroup
		for _, m := range ms {
			cw.Go(func() { _ = m.Close() }) // no leave: Run then returns at once
		}
		cw.Wait()
		cancel()
		wg.Wait()
	}()
	for i := range n {
		c := cfg
		if i > 0 {
			c.Join = []string{ms[0].LocalNode().Address}
		}
		m, err := cluster.NewMembership(cluster.Options{Config: c, NodeName: fmt.Sprintf("n%02d", i)})
		if err != nil {
			return MembershipResult{}, fmt.Errorf("measure membership: agent %d: %w", i, err)
		}
		ms = append(ms, m)
	}
	start := time.Now()
	for _, m := range ms {
		wg.Go(func() { _ = m.Run(runCtx) })
	}
	var res MembershipResult
	err := pollUntil(ctx, 30*time.Second, func() bool {
		for _, m := range ms {
			if countAlive(m.Members()) != n {
				return false
			}
		}
		return true
	})
	if err != nil {
		return res, fmt.Errorf("measure membership: %d agents did not all see each other alive: %w", n, err)
	}
	res.Converge = time.Since(start)

	victim := ms[n-1]
	name := victim.LocalNode().Name
	killed := time.Now()
	_ = victim.Close()
	err = pollUntil(ctx, 30*time.Second, func() bool {
		for _, mb := range ms[0].Members() {
			if mb.Name == name {
				return mb.Status != cluster.StatusAlive
			}
		}
		return true
	})
	if err != nil {
		return res, fmt.Errorf("measure membership: closed agent %s not detected: %w", name, err)
	}
	res.Detect = time.Since(killed)
	return res, nil
}

func countAlive(members []cluster.Member) int {
	n := 0
	for _, m := range members {
		if m.Status == cluster.StatusAlive {
			n++
		}
	}
	return n
}

// pollUntil calls cond every 10 ms until it holds, ctx ends or timeout passes.
func pollUntil(ctx context.Context, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", timeout)
		}
		if err := sleepCtx(ctx, 10*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// Membership runs P10 (convergence of e.Plan.Agents in-process agents) e.Plan.MembershipRuns
// times, and reports the failure-detection time seen in the same runs.
func (e *Env) Membership(ctx context.Context) ([]Row, error) {
	var conv, detect []float64
	slow := 0
	for r := range e.Plan.MembershipRuns {
		e.logf("P10 run %d/%d: %d in-process agents", r+1, e.Plan.MembershipRuns, e.Plan.Agents)
		res, err := MeasureMembership(ctx, e.Plan.Agents)
		if err != nil {
			return nil, err
		}
		conv = append(conv, res.Converge.Seconds())
		if res.Converge > 2*time.Second {
			slow++
		}
		detect = append(detect, res.Detect.Seconds())
	}
	p10 := Row{ID: "P10", Metric: fmt.Sprintf("membership convergence, %d in-process agents", e.Plan.Agents), Unit: "s",
		Picket: Summarize(conv), Target: "≤ 2 s"}
	p10.Verdict = judge(p10.Picket.Median <= 2)
	p10.Note = fmt.Sprintf("package cluster Memberships, fast profile, 127.0.0.1:0, all joining the first; from starting them until every one "+
		"sees %d alive; judged on the median of %d runs; runs over 2 s: %d (when one agent misses another's alive gossip, "+
		"it learns of it only at a push-pull, up to 10 s later: the fast profile's 5 s interval, doubled above 32 agents)", e.Plan.Agents, e.Plan.MembershipRuns, slow)
	det := Row{Metric: "ref: failure detection in the P10 clusters (first agent sees a closed one not alive)", Unit: "s",
		Picket: Summarize(detect), Verdict: Info,
		Note: fmt.Sprintf("closed without leaving, fast profile, cluster.DetectionTime(fast) = %s; P9 measures detection in its own runs",
			cluster.DetectionTime(cluster.ProfileFast))}
	return []Row{p10, det}, nil
}

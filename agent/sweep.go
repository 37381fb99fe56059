package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

// Sweep limits.
const (
	maxSweepTargets = 100_000
	maxSweepBody    = 16 << 20
	sweepChunk      = 64 // targets per agent RPC
	sweepParallel   = 32 // targets run at once on one node
)

// sweepPlaceholders are stand-in targets by check type: a sweep's check may leave its target
// out, since every target fills it in (config.TargetField names where).
var sweepPlaceholders = map[string]string{
	config.TypeHTTP: "http://sweep.invalid/",
	config.TypeTCP:  "sweep.invalid:1",
	config.TypeDNS:  "sweep.invalid",
	config.TypeTLS:  "sweep.invalid:443",
	config.TypeGRPC: "sweep.invalid:443",
}

// sweepTemplate decodes the check of a sweep, filling in a stand-in target when it has none.
func sweepTemplate(raw json.RawMessage) (config.Check, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return decodeAdhocCheck(raw) // reports the error
	}
	var typ string
	json.Unmarshal(fields["type"], &typ)
	if ph, ok := sweepPlaceholders[typ]; ok {
		block := map[string]json.RawMessage{}
		if b, ok := fields[typ]; ok && json.Unmarshal(b, &block) != nil {
			return decodeAdhocCheck(raw) // reports the error
		}
		if field := config.TargetField(typ); block[field] == nil {
			block[field], _ = json.Marshal(ph)
			fields[typ], _ = json.Marshal(block)
			raw, _ = json.Marshal(fields)
		}
	}
	return decodeAdhocCheck(raw)
}

func (a *Agent) handleSweep(w http.ResponseWriter, r *http.Request) {
	var req api.SweepRequest
	if !decodeBody(w, r, maxSweepBody, &req) {
		return
	}
	tmpl, err := sweepTemplate(req.Check)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if tmpl.Type == config.TypeExec {
		writeError(w, http.StatusForbidden, errExecOverAPI)
		return
	}
	if len(req.Targets) == 0 || len(req.Targets) > maxSweepTargets {
		writeError(w, http.StatusBadRequest, fmt.Errorf("give between 1 and %d targets, got %d", maxSweepTargets, len(req.Targets)))
		return
	}
	var progress func(done, total int)
	var sse *sseWriter
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		var ok bool
		if sse, ok = startSSE(w); !ok {
			return
		}
		var mu sync.Mutex
		var n uint64
		last := time.Time{}
		progress = func(done, total int) {
			mu.Lock()
			defer mu.Unlock()
			if done < total && time.Since(last) < 200*time.Millisecond {
				return
			}
			last = time.Now()
			n++
			sse.send(n, "progress", api.SweepProgress{Done: done, Total: total})
		}
	}
	resp, err := a.sweep(r.Context(), tmpl, req.Targets, progress)
	if err != nil {
		if sse != nil {
			sse.send(0, "error", api.Error{Error: err.Error()})
			return
		}
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	if sse != nil {
		sse.send(0, "result", resp)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// sweep spreads targets over the alive nodes by spare capacity, runs them in chunks over
// agent RPC, and reduces the results. A node that fails a chunk gives its targets a result
// with reason unreachable.
func (a *Agent) sweep(ctx context.Context, tmpl config.Check, targets []string, progress func(done, total int)) (api.SweepResponse, error) {
	start := time.Now()
	members := a.aliveMembers()
	shares := cluster.Spread(placementNodes(members), len(targets), cluster.DefaultPlacementPolicy())
	if len(shares) == 0 {
		return api.SweepResponse{}, errors.New("no alive member to run the sweep on")
	}
	byName := map[string]cluster.Member{}
	for _, m := range members {
		byName[m.Name] = m
	}
	results := make([]api.Result, len(targets))
	var (
		mu   sync.Mutex
		done int
		wg   sync.WaitGroup
	)
	next := 0
	for _, sh := range shares {
		m := byName[sh.Node]
		idx := make([]int, sh.Count)
		for i := range idx {
			idx[i] = next + i
		}
		next += sh.Count
		wg.Go(func() {
			for chunk := range slices.Chunk(idx, sweepChunk) {
				ts := make([]string, len(chunk))
				for i, j := range chunk {
					ts[i] = targets[j]
				}
				rs := a.sweepOn(ctx, m, tmpl, ts)
				mu.Lock()
				for i, j := range chunk {
					results[j] = rs[i]
				}
				done += len(chunk)
				d := done
				mu.Unlock()
				if progress != nil {
					progress(d, len(targets))
				}
			}
		})
	}
	wg.Wait()
	return api.SweepResponse{Summary: summarize(results, time.Since(start)), Results: results}, nil
}

type rpcSweepRequest struct {
	Check   config.Check `json:"check"`
	Targets []string     `json:"targets"`
}

type rpcSweepResponse struct {
	Results []api.Result `json:"results"`
}

// sweepOn runs one chunk on member m and always returns one result per target.
func (a *Agent) sweepOn(ctx context.Context, m cluster.Member, tmpl config.Check, targets []string) []api.Result {
	if m.Name == a.Config().NodeName {
		return a.runTargets(ctx, tmpl, targets)
	}
	// Each target is bounded by the check's timeout; chunks run sweepParallel at a time.
	waves := (len(targets) + sweepParallel - 1) / sweepParallel
	ctx, cancel := context.WithTimeout(ctx, time.Duration(waves)*tmpl.Timeout.D()+10*time.Second)
	defer cancel()
	var resp rpcSweepResponse
	err := a.rpcCall(ctx, m, "/rpc/sweep", rpcSweepRequest{Check: tmpl, Targets: targets}, &resp)
	if err == nil && len(resp.Results) != len(targets) {
		err = fmt.Errorf("%s answered %d results for %d targets", m.Name, len(resp.Results), len(targets))
	}
	if err != nil {
		out := make([]api.Result, len(targets))
		for i, t := range targets {
			out[i] = api.Result{Node: m.Name, Check: tmpl.Name, Target: t, Status: checks.Critical.String(),
				Reason: checks.ReasonUnreachable, Output: err.Error(), Error: err.Error(), Time: time.Now().UTC()}
		}
		return out
	}
	return resp.Results
}

// runTargets runs tmpl against each target on this node, sweepParallel at a time.
func (a *Agent) runTargets(ctx context.Context, tmpl config.Check, targets []string) []api.Result {
	node := a.Config().NodeName
	out := make([]api.Result, len(targets))
	sem := make(chan struct{}, sweepParallel)
	var wg sync.WaitGroup
	for i, t := range targets {
		c, err := tmpl.WithTarget(t)
		if err == nil {
			err = c.Validate()
		}
		if err != nil {
			out[i] = api.Result{Node: node, Check: tmpl.Name, Target: t, Status: checks.Critical.String(),
				Reason: checks.ReasonConfig, Output: err.Error(), Time: time.Now().UTC()}
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			r := api.NewResult(node, a.parts.Scheduler.RunOnce(ctx, c))
			r.Check, r.Target = tmpl.Name, t
			out[i] = r
		})
	}
	wg.Wait()
	return out
}

func (a *Agent) rpcSweep(w http.ResponseWriter, r *http.Request) {
	var req rpcSweepRequest
	if !decodeBody(w, r, maxSweepBody, &req) {
		return
	}
	if req.Check.Type == config.TypeExec {
		writeError(w, http.StatusForbidden, errExecOverAPI)
		return
	}
	writeJSON(w, http.StatusOK, rpcSweepResponse{Results: a.runTargets(r.Context(), req.Check, req.Targets)})
}

// summarize reduces sweep results: counts by status and node, latency percentiles, the
// slowest results and the failing ones.
func summarize(rs []api.Result, took time.Duration) api.SweepSummary {
	s := api.SweepSummary{Targets: len(rs), ByStatus: map[string]int{}, ByNode: map[string]int{}, DurationSeconds: took.Seconds()}
	lat := make([]float64, 0, len(rs))
	for _, r := range rs {
		s.ByStatus[r.Status]++
		s.ByNode[r.Node]++
		if r.Error == "" {
			lat = append(lat, r.DurationSeconds)
		}
		if r.Status != checks.Passing.String() && len(s.Failing) < 20 {
			s.Failing = append(s.Failing, r)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	s.P50Seconds, s.P90Seconds, s.P99Seconds = pct(0.50), pct(0.90), pct(0.99)
	slowest := slices.Clone(rs)
	slices.SortStableFunc(slowest, func(a, b api.Result) int {
		switch {
		case a.DurationSeconds > b.DurationSeconds:
			return -1
		case a.DurationSeconds < b.DurationSeconds:
			return 1
		}
		return 0
	})
	s.Slowest = slowest[:min(5, len(slowest))]
	return s
}

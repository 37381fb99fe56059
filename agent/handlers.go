package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
	"github.com/picket-dev/picket/internal/version"
)

// ready reports whether the agent is in a cluster with a known aggregator, and why not.
func (a *Agent) ready() (bool, string) {
	info, ok := a.parts.Leader.Info()
	if !ok {
		cfg := a.Config()
		if len(a.aliveMembers()) < 2 && (len(cfg.Cluster.Join) > 0 || cfg.Cluster.Discovery.DNS.Name != "" || cfg.Cluster.Discovery.MDNS.Enabled) {
			return false, "not joined yet: no seed of cluster.join or discovery has answered"
		}
		return false, "no aggregator elected yet: waiting for a quorum of Raft voters (cluster.raft.bootstrap_expect servers must be up)"
	}
	return true, "ready: aggregator " + info.Name
}

func (a *Agent) handleReady(w http.ResponseWriter, _ *http.Request) {
	ok, reason := a.ready()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write([]byte(reason + "\n"))
}

func (a *Agent) handleAgent(w http.ResponseWriter, _ *http.Request) {
	cfg := a.Config()
	self := a.parts.Membership.LocalNode()
	a.mu.RLock()
	started := a.started
	a.mu.RUnlock()
	roles := self.Meta.Roles
	if roles == nil {
		roles = []string{}
	}
	writeJSON(w, http.StatusOK, api.Agent{
		Name:      cfg.NodeName,
		Version:   a.parts.Version,
		Revision:  version.Revision,
		GoVersion: version.GoVersion(),
		Addresses: map[string]string{
			"http": a.Addr().String(), "gossip": self.Address, "rpc": self.Meta.RPCAddr,
		},
		Roles:      roles,
		Load:       a.parts.Load.Load(),
		ConfigHash: cfg.Hash(),
		Started:    started.UTC(),
		Checks:     len(cfg.Checks),
	})
}

// errExecOverAPI refuses exec checks from the network: commands come only from local files.
var errExecOverAPI = errors.New("exec checks run only from local config files; the API refuses them")

func (a *Agent) handleRun(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	if !decodeBody(w, r, maxRunBody, &req) {
		return
	}
	c, err := decodeAdhocCheck(req.Check)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if c.Type == config.TypeExec {
		writeError(w, http.StatusForbidden, errExecOverAPI)
		return
	}
	results, status, err := a.runRemote(r.Context(), c, req.Node, req.All)
	if err != nil {
		writeError(w, status, err)
		return
	}
	writeJSON(w, http.StatusOK, api.RunResponse{Results: results})
}

// decodeAdhocCheck decodes the check of /v1/run and /v1/sweep. A missing name is filled in:
// an ad-hoc check needs none.
func decodeAdhocCheck(raw json.RawMessage) (config.Check, error) {
	if len(raw) == 0 {
		return config.Check{}, errors.New(`missing "check": give a check definition, e.g. {"type":"http","http":{"url":"http://..."}}`)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return config.Check{}, fmt.Errorf("check: must be a JSON object: %w", err)
	}
	if _, ok := fields["name"]; !ok {
		fields["name"] = json.RawMessage(`"run"`)
		raw, _ = json.Marshal(fields)
	}
	return config.DecodeCheckJSON(raw)
}

// handleEvents lists recent events, oldest first; with follow=true it then streams new
// ones as Server-Sent Events until the client goes away. `after=ID` skips events up to ID
// (an SSE client's Last-Event-ID header does the same).
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var after uint64
	if s := q.Get("after"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("after=%q: want an event id", s))
			return
		}
		after = v
	}
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		if v, err := strconv.ParseUint(s, 10, 64); err == nil {
			after = v
		}
	}
	follow := q.Get("follow") == "true" || q.Get("follow") == "1"
	evs, wake := a.events.since(after)
	if !follow {
		if evs == nil {
			evs = []Event{}
		}
		writeJSON(w, http.StatusOK, evs)
		return
	}
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	keepalive := time.NewTicker(sseKeepalive)
	defer keepalive.Stop()
	for {
		for _, e := range evs {
			if err := sse.send(e.ID, "event", e); err != nil {
				return
			}
			after = e.ID
		}
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if sse.keepalive() != nil {
				return
			}
		case <-wake:
		}
		evs, wake = a.events.since(after)
	}
}

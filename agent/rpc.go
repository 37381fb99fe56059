package agent

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/picket-dev/picket/checks"
	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/config"
)

// Agent RPC: typed requests between agents, as HTTP/JSON over the RPC port (cluster.rpc),
// never arbitrary commands. When gossip is encrypted, each request carries an HMAC token
// derived from the sender's primary gossip key; a receiver accepts a token of any key it has
// installed, so key rotation keeps RPC working. With cluster.tls the port also needs mutual
// TLS.

const rpcAuthHeader = "X-Picket-Rpc-Auth"

// Bounds of agent RPC request bodies and answers.
const (
	maxRPCBody   = 4 << 20
	maxRPCAnswer = 64 << 20
)

// rpcToken derives the RPC token of a base64 gossip key.
func rpcToken(key string) string {
	k, err := base64.StdEncoding.DecodeString(key)
	if err != nil {
		return ""
	}
	mac := hmac.New(sha256.New, k)
	mac.Write([]byte("picket agent rpc v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

// rpcHandler serves agent RPC.
func (a *Agent) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /rpc/run", a.rpcRun)
	mux.HandleFunc("POST /rpc/keyring", a.rpcKeyring)
	mux.HandleFunc("POST /rpc/sweep", a.rpcSweep)
	mux.HandleFunc("POST /rpc/logs", a.rpcLogs)
	mux.HandleFunc("POST /rpc/logs/stream", a.rpcLogStream)
	mux.HandleFunc("POST /rpc/logs/query", a.rpcLogsQuery)
	mux.HandleFunc("GET /rpc/logs/follow", a.rpcLogsFollow)
	mux.HandleFunc("POST /rpc/registry", a.rpcRegistry)
	mux.HandleFunc("POST /rpc/leader", a.rpcLeader)
	mux.HandleFunc("POST /rpc/checks", a.rpcChecks)
	mux.HandleFunc("POST /rpc/checks/sync", a.rpcSync)
	mux.HandleFunc("POST /rpc/checks/results", a.rpcResults)
	mux.HandleFunc("POST /rpc/checks/assignments", a.rpcAssignments)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if keys := a.parts.Membership.ListKeys(); len(keys) > 0 {
			got := r.Header.Get(rpcAuthHeader)
			ok := false
			for _, k := range keys {
				ok = ok || hmac.Equal([]byte(got), []byte(rpcToken(k)))
			}
			if !ok {
				a.log.Warn("agent RPC refused: wrong or missing token (does the caller use this cluster's gossip key?)", "remote", r.RemoteAddr)
				writeError(w, http.StatusUnauthorized, errors.New("agent RPC token does not match any installed gossip key"))
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// rpcCall sends one agent RPC to a member and decodes the answer into out.
func (a *Agent) rpcCall(ctx context.Context, m cluster.Member, path string, in, out any) error {
	if m.Meta.RPCAddr == "" {
		return fmt.Errorf("%s gossips no RPC address", m.Name)
	}
	return postRPC(ctx, a.rpcClient, a.parts.Membership, m.Name, m.Meta.RPCAddr, path, in, out)
}

// postRPC sends in as JSON to path on the agent named name at addr, with the token of this
// agent's primary gossip key, and decodes a 200 answer into out (when not nil). Any other
// answer becomes an *rpcError that keeps the answer's code; a failure to reach the agent
// is returned wrapped, naming it.
func postRPC(ctx context.Context, client *http.Client, ms *cluster.Membership, name, addr, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return postRPCBody(ctx, client, ms, name, addr, path, "application/json", body, out)
}

// postRPCBody is postRPC with a body already encoded, of the given content type.
func postRPCBody(ctx context.Context, client *http.Client, ms *cluster.Membership, name, addr, path, contentType string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	if keys := ms.ListKeys(); len(keys) > 0 {
		req.Header.Set(rpcAuthHeader, rpcToken(keys[0]))
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("rpc to %s at %s: %w", name, addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxRPCAnswer))
	if err != nil {
		return fmt.Errorf("rpc to %s at %s: %w", name, addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		json.Unmarshal(data, &e)
		if e.Error == "" {
			e.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return &rpcError{status: resp.StatusCode, code: e.Code, msg: name + ": " + e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// rpcRunRequest asks an agent to run a check once.
type rpcRunRequest struct {
	Check config.Check `json:"check"`
}

func (a *Agent) rpcRun(w http.ResponseWriter, r *http.Request) {
	var req rpcRunRequest
	if !decodeBody(w, r, maxRPCBody, &req) {
		return
	}
	// Defence in depth: the check was validated by the sender, but this agent does not trust
	// the network with commands.
	if req.Check.Type == config.TypeExec {
		writeError(w, http.StatusForbidden, errExecOverAPI)
		return
	}
	if err := req.Check.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	res := a.parts.Scheduler.RunOnce(r.Context(), req.Check)
	out := api.NewResult(a.Config().NodeName, res)
	out.Check = req.Check.Name
	writeJSON(w, http.StatusOK, out)
}

// runOn runs c once on member m (locally when m is this agent) and never fails: an
// unreachable node becomes a result with Error set and reason unreachable.
func (a *Agent) runOn(ctx context.Context, m cluster.Member, c config.Check) api.Result {
	if m.Name == a.Config().NodeName {
		out := api.NewResult(m.Name, a.parts.Scheduler.RunOnce(ctx, c))
		out.Check = c.Name
		return out
	}
	// The remote side enforces the check's timeout; allow for the network on top.
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.D()+5*time.Second)
	defer cancel()
	var out api.Result
	if err := a.rpcCall(ctx, m, "/rpc/run", rpcRunRequest{Check: c}, &out); err != nil {
		return api.Result{
			Node: m.Name, Check: c.Name, Status: checks.Critical.String(), Reason: checks.ReasonUnreachable,
			Output: err.Error(), Error: err.Error(), Time: time.Now().UTC(),
		}
	}
	out.Node = m.Name
	return out
}

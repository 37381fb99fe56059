package agent

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
)

// The global name registry (Erlang's :global): register is first-come and linearizable
// through Raft; a name's owner is a node, and a dead or departed owner's names are released.

var validName = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,128}$`)

const maxValueBytes = 4 << 10

type rpcRegistryRequest struct {
	Op    string `json:"op"` // register | unregister | whereis | list
	Name  string `json:"name,omitempty"`
	Owner string `json:"owner,omitempty"`
	Value string `json:"value,omitempty"`
}

type rpcRegistryResponse struct {
	Names []cluster.Registration `json:"names"`
}

// registry runs one registry operation on the aggregator, locally or over RPC. Reads are
// linearizable: the aggregator confirms its leadership first.
func (a *Agent) registry(ctx context.Context, req rpcRegistryRequest) ([]cluster.Registration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if !a.parts.Leader.local() {
		var out rpcRegistryResponse
		err := a.parts.Leader.call(ctx, "/rpc/registry", req, &out)
		return out.Names, err
	}
	rn := a.parts.Raft
	switch req.Op {
	case "register":
		return nil, rn.Register(ctx, req.Name, req.Owner, req.Value)
	case "unregister":
		return nil, rn.Unregister(ctx, req.Name, req.Owner)
	case "whereis", "list":
		if err := rn.VerifyLeader(ctx); err != nil {
			return nil, err
		}
		if req.Op == "list" {
			return rn.Names(), nil
		}
		reg, ok := rn.Whereis(req.Name)
		if !ok {
			return nil, fmt.Errorf("%w: %q", cluster.ErrUnknownName, req.Name)
		}
		return []cluster.Registration{reg}, nil
	}
	return nil, fmt.Errorf("unknown registry op %q", req.Op)
}

func (a *Agent) rpcRegistry(w http.ResponseWriter, r *http.Request) {
	var req rpcRegistryRequest
	if !a.decodeForAggregator(w, r, maxSmallBody, &req) {
		return
	}
	names, err := a.registry(r.Context(), req)
	if err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rpcRegistryResponse{Names: names})
}

func registrationView(r cluster.Registration) api.Registration {
	return api.Registration{Name: r.Name, Owner: r.Owner, Value: r.Value, Since: r.Since.UTC()}
}

func (a *Agent) handleRegistryList(w http.ResponseWriter, r *http.Request) {
	names, err := a.registry(r.Context(), rpcRegistryRequest{Op: "list"})
	if err != nil {
		writeAggError(w, err)
		return
	}
	out := make([]api.Registration, 0, len(names))
	for _, n := range names {
		out = append(out, registrationView(n))
	}
	writeJSON(w, http.StatusOK, out)
}

// nameOf validates the {name} path value, answering 400 itself when it is bad.
func nameOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if !validName.MatchString(name) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("name %.80q: use 1 to 128 letters, digits and _ . : / -", name))
		return "", false
	}
	return name, true
}

func (a *Agent) handleRegister(w http.ResponseWriter, r *http.Request) {
	name, ok := nameOf(w, r)
	if !ok {
		return
	}
	var req api.RegisterRequest
	if r.ContentLength != 0 && !decodeBody(w, r, maxSmallBody, &req) {
		return
	}
	if len(req.Value) > maxValueBytes {
		writeError(w, http.StatusBadRequest, fmt.Errorf("value is longer than %d bytes", maxValueBytes))
		return
	}
	owner := req.Owner
	if owner == "" {
		owner = a.Config().NodeName
	}
	if _, err := a.findMember(owner); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("owner: %w (a name is owned by an alive member)", err))
		return
	}
	if _, err := a.registry(r.Context(), rpcRegistryRequest{Op: "register", Name: name, Owner: owner, Value: req.Value}); err != nil {
		writeAggError(w, err)
		return
	}
	names, err := a.registry(r.Context(), rpcRegistryRequest{Op: "whereis", Name: name})
	if err != nil || len(names) == 0 {
		writeJSON(w, http.StatusOK, api.Registration{Name: name, Owner: owner, Value: req.Value})
		return
	}
	writeJSON(w, http.StatusOK, registrationView(names[0]))
}

func (a *Agent) handleWhereis(w http.ResponseWriter, r *http.Request) {
	name, ok := nameOf(w, r)
	if !ok {
		return
	}
	names, err := a.registry(r.Context(), rpcRegistryRequest{Op: "whereis", Name: name})
	if err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, registrationView(names[0]))
}

// handleUnregister releases a name whoever holds it, or only if ?owner= holds it.
func (a *Agent) handleUnregister(w http.ResponseWriter, r *http.Request) {
	name, ok := nameOf(w, r)
	if !ok {
		return
	}
	if _, err := a.registry(r.Context(), rpcRegistryRequest{Op: "unregister", Name: name, Owner: r.URL.Query().Get("owner")}); err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"unregistered": true})
}

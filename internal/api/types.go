// Package api holds the JSON shapes of picket's HTTP API (DESIGN.md §5), shared by the
// server in package agent and the command-line client.
package api

import (
	"encoding/json"
	"time"

	"github.com/picket-dev/picket/checks"
)

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
	// Code names the kind of error for programs: not_leader, no_leader, name_taken,
	// not_owner, unknown, invalid. Empty for others.
	Code string `json:"code,omitempty"`
}

// Agent is GET /v1/agent.
type Agent struct {
	Name       string            `json:"name"`
	Version    string            `json:"version"`
	Revision   string            `json:"revision"`
	GoVersion  string            `json:"go_version"`
	Addresses  map[string]string `json:"addresses"` // http, gossip, rpc
	Roles      []string          `json:"roles"`
	Load       float64           `json:"load"`
	ConfigHash string            `json:"config_hash"`
	Started    time.Time         `json:"started"`
	Checks     int               `json:"checks"`
}

// Check is one element of GET /v1/checks: a check, where it runs and how it is doing.
type Check struct {
	Name      string    `json:"name"`
	Type      string    `json:"type"`
	Placement string    `json:"placement"`
	Nodes     []string  `json:"nodes"`
	Status    string    `json:"status"`
	Flapping  bool      `json:"flapping"`
	Since     time.Time `json:"since"`
	Output    string    `json:"output"`
	Results   []Result  `json:"results"`
}

// Result is one node's latest (or one ad-hoc) result of a check.
type Result struct {
	Node            string         `json:"node"`
	Check           string         `json:"check,omitempty"`
	Target          string         `json:"target,omitempty"` // sweeps
	Status          string         `json:"status"`
	Reason          string         `json:"reason,omitempty"`
	Output          string         `json:"output"`
	DurationSeconds float64        `json:"duration_seconds"`
	Time            time.Time      `json:"time"`
	Phases          []checks.Phase `json:"phases,omitempty"`
	CertExpiry      *time.Time     `json:"cert_expiry,omitempty"`
	Error           string         `json:"error,omitempty"` // the node could not run it
}

// NewResult converts a check result for the API.
func NewResult(node string, r checks.Result) Result {
	out := Result{
		Node:            node,
		Status:          r.Status.String(),
		Reason:          r.Reason,
		Output:          r.Output,
		DurationSeconds: r.Duration.Seconds(),
		Time:            r.Time.UTC(),
		Phases:          r.Phases,
	}
	if !r.CertExpiry.IsZero() {
		t := r.CertExpiry.UTC()
		out.CertExpiry = &t
	}
	return out
}

// RunRequest is POST /v1/run. Check is decoded strictly by config.DecodeCheckJSON.
type RunRequest struct {
	Check json.RawMessage `json:"check"`
	Node  string          `json:"node,omitempty"`
	All   bool            `json:"all,omitempty"`
}

// RunResponse answers POST /v1/run: one result per node the check ran on.
type RunResponse struct {
	Results []Result `json:"results"`
}

// Member is one element of GET /v1/members.
type Member struct {
	Name        string            `json:"name"`
	Address     string            `json:"address"` // gossip host:port
	Status      string            `json:"status"`  // alive | suspect | dead | left
	Load        float64           `json:"load"`
	Roles       []string          `json:"roles"`
	Version     string            `json:"version"`
	Tags        map[string]string `json:"tags"`
	RPCAddress  string            `json:"rpc_address,omitempty"`
	HTTPAddress string            `json:"http_address,omitempty"`
	Health      int               `json:"health"`
	ConfigHash  string            `json:"config_hash,omitempty"`
}

// JoinRequest is POST /v1/members/join.
type JoinRequest struct {
	Addresses []string `json:"addresses"`
}

// JoinResponse answers POST /v1/members/join: how many addresses answered.
type JoinResponse struct {
	Joined int `json:"joined"`
}

// Ping is GET /v1/members/{name}/ping.
type Ping struct {
	Name       string  `json:"name"`
	RTTSeconds float64 `json:"rtt_seconds"`
}

// KeyringRequest is POST /v1/keyring ({"op": "install"|"use", "key": ...}) and
// DELETE /v1/keyring ({"key": ...}).
type KeyringRequest struct {
	Op  string `json:"op,omitempty"`
	Key string `json:"key"`
}

// Keyring answers the keyring endpoints: every key installed on the alive members.
type Keyring struct {
	Nodes  int               `json:"nodes"` // alive members asked
	Keys   []KeyInfo         `json:"keys"`
	Errors map[string]string `json:"errors,omitempty"` // member → why it failed
	Error  string            `json:"error,omitempty"`
}

// KeyInfo is one gossip key and where it is installed.
type KeyInfo struct {
	Key       string `json:"key"`
	Nodes     int    `json:"nodes"`      // members that have it installed
	PrimaryOn int    `json:"primary_on"` // members that encrypt with it
}

// SweepRequest is POST /v1/sweep: one check definition run against many targets, which are
// spread over the alive nodes by load. The target replaces the check's target field (the
// URL of http, the address of tcp, tls and grpc, the name of dns).
type SweepRequest struct {
	Check   json.RawMessage `json:"check"`
	Targets []string        `json:"targets"`
}

// SweepResponse answers POST /v1/sweep.
type SweepResponse struct {
	Summary SweepSummary `json:"summary"`
	Results []Result     `json:"results"` // one per target, in the order given
}

// SweepSummary reduces a sweep's results.
type SweepSummary struct {
	Targets         int            `json:"targets"`
	ByStatus        map[string]int `json:"by_status"`
	ByNode          map[string]int `json:"by_node"`
	P50Seconds      float64        `json:"p50_seconds"`
	P90Seconds      float64        `json:"p90_seconds"`
	P99Seconds      float64        `json:"p99_seconds"`
	Slowest         []Result       `json:"slowest"` // up to 5
	Failing         []Result       `json:"failing"` // up to 20 non-passing results
	DurationSeconds float64        `json:"duration_seconds"`
}

// SweepProgress is one Server-Sent Event of a streamed sweep (Accept: text/event-stream):
// "progress" events while it runs, then one "result" event with the SweepResponse.
type SweepProgress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// LogRecord is one record of POST /v1/logs.
type LogRecord struct {
	Time    time.Time         `json:"time"` // default: when the agent received it
	Level   string            `json:"level"`
	Message string            `json:"message"`
	Attrs   map[string]string `json:"attrs"`
}

// LogsAccepted answers POST /v1/logs once the records are committed.
type LogsAccepted struct {
	Accepted int `json:"accepted"`
}

// Leader is GET /v1/leader.
type Leader struct {
	Name    string `json:"name"`
	Address string `json:"address"` // RPC address
	Term    uint64 `json:"term"`
}

// Registration is one global name of /v1/registry.
type Registration struct {
	Name  string    `json:"name"`
	Owner string    `json:"owner"`
	Value string    `json:"value"`
	Since time.Time `json:"since"`
}

// RegisterRequest is the optional body of PUT /v1/registry/{name}.
type RegisterRequest struct {
	Value string `json:"value"`
	Owner string `json:"owner,omitempty"` // default: the agent that receives the request
}

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/picket-dev/picket/cluster"
	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/logstore"
)

// Limits of POST /v1/logs. Larger bodies get 413, records over a limit 400.
const (
	maxLogsBody       = 4 << 20
	maxLogsPerPost    = 10_000
	maxMessageBytes   = 8 << 10
	maxAttrs          = 32
	maxAttrKeyBytes   = 128
	maxAttrValueBytes = 1 << 10
	maxIdemKeyBytes   = 128
	logsCommitTimeout = 10 * time.Second
)

// validateLogs checks posted records and converts them, naming the first bad one.
func validateLogs(in []api.LogRecord, node string, now time.Time) ([]logstore.Record, error) {
	if len(in) == 0 {
		return nil, errors.New(`no records: send a JSON array of {"level","message","attrs","time"}`)
	}
	if len(in) > maxLogsPerPost {
		return nil, fmt.Errorf("%d records in one post; send at most %d", len(in), maxLogsPerPost)
	}
	out := make([]logstore.Record, len(in))
	for i, r := range in {
		level, err := logstore.NormalizeLevel(r.Level)
		if err != nil {
			return nil, fmt.Errorf("record %d: %v", i, err)
		}
		if r.Message == "" {
			return nil, fmt.Errorf("record %d: message is empty", i)
		}
		if len(r.Message) > maxMessageBytes {
			return nil, fmt.Errorf("record %d: message is %d bytes, more than %d", i, len(r.Message), maxMessageBytes)
		}
		if len(r.Attrs) > maxAttrs {
			return nil, fmt.Errorf("record %d: %d attrs, more than %d", i, len(r.Attrs), maxAttrs)
		}
		for k, v := range r.Attrs {
			if k == "" || len(k) > maxAttrKeyBytes || len(v) > maxAttrValueBytes {
				return nil, fmt.Errorf("record %d: attr %.40q: keys are 1 to %d bytes, values at most %d", i, k, maxAttrKeyBytes, maxAttrValueBytes)
			}
		}
		t := r.Time
		if t.IsZero() {
			t = now
		}
		out[i] = logstore.Record{Time: t.UTC(), Level: level, Message: r.Message, Node: node, Attrs: r.Attrs}
	}
	return out, nil
}

// handlePostLogs ingests records and answers only after a Raft majority committed them.
func (a *Agent) handlePostLogs(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	if len(key) > maxIdemKeyBytes {
		writeError(w, http.StatusBadRequest, fmt.Errorf("Idempotency-Key is longer than %d bytes", maxIdemKeyBytes))
		return
	}
	body, ok := readBody(w, r, maxLogsBody)
	if !ok {
		return
	}
	in, err := decodeLogRecords(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("malformed JSON body: %w", err))
		return
	}
	recs, err := validateLogs(in, a.Config().NodeName, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), logsCommitTimeout)
	defer cancel()
	n, err := a.parts.Shipper.Post(ctx, key, recs)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: not committed within %s; retry with the same Idempotency-Key", cluster.ErrNoLeader, logsCommitTimeout)
		}
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.LogsAccepted{Accepted: n})
}

// parseLogQuery reads the filters of GET /v1/logs. since and until take an RFC 3339 time
// or a duration before now ("15m").
func parseLogQuery(v url.Values, now time.Time) (logstore.Query, error) {
	q := logstore.Query{Node: v.Get("node"), Contains: v.Get("contains")}
	if l := v.Get("level"); l != "" {
		n, err := logstore.NormalizeLevel(l)
		if err != nil {
			return q, fmt.Errorf("level: %v", err)
		}
		q.Level = n
	}
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		s := v.Get(f.name)
		if s == "" {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			*f.dst = t
		} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			*f.dst = now.Add(-d)
		} else {
			return q, fmt.Errorf("%s=%q: want an RFC 3339 time (2026-01-02T15:04:05Z) or a duration before now (15m)", f.name, s)
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > logstore.MaxLimit {
			return q, fmt.Errorf("limit=%q: want 1 to %d", s, logstore.MaxLimit)
		}
		q.Limit = n
	}
	return q, nil
}

func isTrue(s string) bool { return s == "true" || s == "1" }

// handleGetLogs queries the cluster log, newest first: on the aggregator (linearizable),
// on this voter's copy with stale=true, else forwarded to the aggregator. With follow=true
// it streams matching records as Server-Sent Events, oldest first.
func (a *Agent) handleGetLogs(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	q, err := parseLogQuery(v, time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if isTrue(v.Get("follow")) {
		a.followLogs(w, r, q)
		return
	}
	recs, err := a.queryLogs(r.Context(), q, isTrue(v.Get("stale")))
	if err != nil {
		writeAggError(w, err)
		return
	}
	if recs == nil {
		recs = []logstore.Record{}
	}
	writeJSON(w, http.StatusOK, recs)
}

func (a *Agent) queryLogs(ctx context.Context, q logstore.Query, stale bool) ([]logstore.Record, error) {
	rn := a.parts.Raft
	if a.parts.Leader.member() && (stale || rn.IsLeader()) {
		if !stale {
			ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			if err := rn.VerifyLeader(ctx); err != nil {
				return nil, err
			}
		}
		return rn.QueryLogs(q)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var out []logstore.Record
	err := a.parts.Leader.call(ctx, "/rpc/logs/query", q, &out)
	return out, err
}

// followLogs streams records from a local copy of the store (a voter's), or proxies the
// aggregator's stream on agents that have none. The first records sent are the newest
// matches (up to the limit), then every new match as it commits.
func (a *Agent) followLogs(w http.ResponseWriter, r *http.Request, q logstore.Query) {
	if !a.parts.Leader.member() {
		a.proxyFollow(w, r)
		return
	}
	store := a.parts.Raft.Store()
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	recent, err := store.Query(q)
	if err != nil {
		sse.send(0, "error", api.Error{Error: err.Error()})
		return
	}
	var cursor uint64
	for i := len(recent) - 1; i >= 0; i-- {
		if sse.send(recent[i].Index, "log", recent[i]) != nil {
			return
		}
	}
	if len(recent) > 0 {
		cursor = recent[0].Index
	} else if st, err := store.Stats(); err == nil {
		cursor = st.LastIndex
	}
	match := q
	match.Limit = logstore.MaxLimit
	keepalive := time.NewTicker(sseKeepalive)
	defer keepalive.Stop()
	for {
		changed := store.Changed()
		batch, err := store.Since(cursor, 1000)
		if err != nil {
			sse.send(0, "error", api.Error{Error: err.Error()})
			return
		}
		for _, rec := range batch {
			cursor = rec.Index
			if matches(match, rec) && sse.send(rec.Index, "log", rec) != nil {
				return
			}
		}
		if len(batch) == 1000 {
			continue
		}
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			if sse.keepalive() != nil {
				return
			}
		case <-changed:
		}
	}
}

// matches applies a query's filters to one record (for follow mode).
func matches(q logstore.Query, r logstore.Record) bool {
	if q.Level != "" && levelRank(r.Level) < levelRank(q.Level) {
		return false
	}
	if q.Node != "" && r.Node != q.Node {
		return false
	}
	if !q.Since.IsZero() && r.Time.Before(q.Since) {
		return false
	}
	if !q.Until.IsZero() && !r.Time.Before(q.Until) {
		return false
	}
	return q.Contains == "" || strings.Contains(strings.ToLower(r.Message), strings.ToLower(q.Contains))
}

func levelRank(l string) int {
	switch l {
	case "debug":
		return 0
	case "info":
		return 1
	case "warn":
		return 2
	}
	return 3
}

// proxyFollow relays the aggregator's follow stream (its HTTP API over agent RPC).
func (a *Agent) proxyFollow(w http.ResponseWriter, r *http.Request) {
	info, err := a.parts.Leader.waitLeader(r.Context())
	if err != nil {
		writeAggError(w, err)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), "GET", "http://"+info.Address+"/rpc/logs/follow?"+r.URL.RawQuery, nil)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if keys := a.parts.Membership.ListKeys(); len(keys) > 0 {
		req.Header.Set(rpcAuthHeader, rpcToken(keys[0]))
	}
	resp, err := a.rpcClient.Do(req)
	if err != nil {
		writeAggError(w, fmt.Errorf("%w: %v", cluster.ErrNoLeader, err))
		return
	}
	defer resp.Body.Close()
	sse, ok := startSSE(w)
	if !ok {
		return
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := sse.w.Write(buf[:n]); werr != nil {
				return
			}
			sse.f.Flush()
		}
		if err != nil {
			return
		}
	}
}

// RPC side, served by every agent and answered by the aggregator.

func (a *Agent) rpcLogs(w http.ResponseWriter, r *http.Request) {
	var req rpcLogsRequest
	if !decodeBody(w, r, maxRPCBody*4, &req) {
		return
	}
	if a.parts.Raft == nil {
		writeAggError(w, cluster.ErrNotLeader)
		return
	}
	acc, err := a.parts.Raft.AppendLogs(r.Context(), req.Node, req.Groups)
	if err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rpcLogsResponse{Accepted: acc})
}

func (a *Agent) rpcLogsQuery(w http.ResponseWriter, r *http.Request) {
	var q logstore.Query
	if !a.decodeForAggregator(w, r, maxSmallBody, &q) {
		return
	}
	recs, err := a.queryLogs(r.Context(), q, false)
	if err != nil {
		writeAggError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, recs)
}

func (a *Agent) rpcLogsFollow(w http.ResponseWriter, r *http.Request) {
	if a.parts.Raft == nil {
		writeAggError(w, cluster.ErrNotLeader)
		return
	}
	q, err := parseLogQuery(r.URL.Query(), time.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	a.followLogs(w, r, q)
}

// handleLeader answers GET /v1/leader: the aggregator, with its term.
func (a *Agent) handleLeader(w http.ResponseWriter, r *http.Request) {
	info, ok := a.parts.Leader.Info()
	if !ok {
		writeAggError(w, fmt.Errorf("%w: no aggregator elected yet (is a quorum of voters up?)", cluster.ErrNoLeader))
		return
	}
	if info.Term == 0 {
		// A non-voter learns the term from the aggregator itself.
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		var full cluster.LeaderInfo
		if err := a.parts.Leader.callAt(ctx, info, "/rpc/leader", struct{}{}, &full); err == nil {
			info = full
		}
	}
	writeJSON(w, http.StatusOK, api.Leader{Name: info.Name, Address: info.Address, Term: info.Term})
}

func (a *Agent) rpcLeader(w http.ResponseWriter, _ *http.Request) {
	if a.parts.Raft == nil {
		writeAggError(w, cluster.ErrNotLeader)
		return
	}
	info, ok := a.parts.Raft.Leader()
	if !ok {
		writeAggError(w, cluster.ErrNoLeader)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

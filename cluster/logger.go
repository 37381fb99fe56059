package cluster

import (
	"context"
	"log"
	"log/slog"
	"regexp"
	"strings"
)

// newMemberlistLogger adapts memberlist's *log.Logger to slog. Each memberlist line starts
// with a level prefix ([DEBUG], [INFO], [WARN], [ERR] or [ERROR]) that becomes the slog
// level; lines that say a peer was refused for its key or cluster name come out at warn
// with a message that says why and how to fix it. cluster is this agent's cluster.name.
func newMemberlistLogger(l *slog.Logger, cluster string) *log.Logger {
	return log.New(&memberlistWriter{log: l, cluster: cluster}, "", 0)
}

// memberlistWriter receives one formatted memberlist log line per Write call (log.Logger
// guarantees that) and may be called from many goroutines at once; it keeps no state.
type memberlistWriter struct {
	log     *slog.Logger
	cluster string
}

func (w *memberlistWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level, msg := splitLevel(line)
	ctx := context.Background()
	// Only the receiving side's lines (memberlist logs them at [ERR]) are refusals; the
	// joining side's "failed to join" is [DEBUG] and Join itself explains it at warn.
	if r, ok := refusal(msg); ok && level > slog.LevelDebug {
		attrs := []any{"reason", r.reason, "fix", r.fix, "detail", msg}
		if peer := peerAddr(msg); peer != "" {
			attrs = append(attrs, "peer", peer)
		}
		if r.label {
			attrs = append(attrs, "cluster", w.cluster)
			if m := labelRE.FindStringSubmatch(msg); m != nil {
				attrs = append(attrs, "peer_cluster", m[1])
			}
		}
		w.log.Log(ctx, slog.LevelWarn, "refused gossip from a peer that is not part of this cluster", attrs...)
		return len(p), nil
	}
	if w.log.Enabled(ctx, level) {
		w.log.Log(ctx, level, msg)
	}
	return len(p), nil
}

// splitLevel takes memberlist's level prefix and the "memberlist: " tag off a line.
func splitLevel(line string) (slog.Level, string) {
	level := slog.LevelInfo
	prefixes := []struct {
		p string
		l slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError}, {"[ERROR]", slog.LevelError}, {"Err:", slog.LevelError},
	}
	for _, x := range prefixes {
		if rest, ok := strings.CutPrefix(line, x.p); ok {
			level, line = x.l, strings.TrimSpace(rest)
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}

// refusalReason explains why memberlist refused a peer's packet or stream.
type refusalReason struct {
	reason string
	fix    string
	label  bool // the peer's cluster.name differs
}

// refusals maps memberlist's wording (it has no typed errors for these) to explanations.
// The same table explains a failed join on the joining side (see explainJoinError).
var refusals = []struct {
	substr string
	r      refusalReason
}{
	{"no installed keys could decrypt", refusalReason{
		reason: "the peer's gossip is encrypted with a key this agent does not have",
		fix:    "use the same cluster.key on every agent (during a rotation, install the new key everywhere before using it)",
	}},
	{"encryption is configured but remote state is not encrypted", refusalReason{
		reason: "the peer sends unencrypted gossip but this agent requires cluster.key",
		fix:    "set the cluster's cluster.key on the peer",
	}},
	{"remote state is encrypted and encryption is not configured", refusalReason{
		reason: "the peer encrypts gossip with a cluster.key but this agent has none",
		fix:    "set the cluster's cluster.key on this agent",
	}},
	{"unacceptable label", refusalReason{
		reason: "the peer belongs to another cluster (its cluster.name differs)",
		fix:    "give both agents the same cluster.name, or do not point one cluster at the other",
		label:  true,
	}},
	{"label header cannot be empty", refusalReason{
		reason: "the peer sent a malformed cluster name header",
		fix:    "check that the peer is a picket agent of this cluster",
		label:  true,
	}},
	{"unexpected double", refusalReason{
		reason: "the peer sent a second cluster name header",
		fix:    "check that the peer is a picket agent of this cluster",
		label:  true,
	}},
}

// refusal reports whether a memberlist message is about a peer refused for its key or
// cluster name. Matching is case-insensitive: memberlist's wording varies in case.
func refusal(msg string) (refusalReason, bool) {
	lower := strings.ToLower(msg)
	for _, x := range refusals {
		if strings.Contains(lower, x.substr) {
			return x.r, true
		}
	}
	return refusalReason{}, false
}

var (
	labelRE = regexp.MustCompile(`unacceptable label "([^"]*)"`)
	peerRE  = regexp.MustCompile(`from=(\S+)`)
)

// peerAddr extracts memberlist's "from=host:port" suffix.
func peerAddr(msg string) string {
	if m := peerRE.FindStringSubmatch(msg); m != nil {
		return m[1]
	}
	return ""
}

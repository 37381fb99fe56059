package cluster

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// raftLogger adapts the hclog.Logger that raft, its transport and raft-wal expect to slog.
// Raft reports ordinary happenings (entering follower state, pipelining, snapshots) at
// INFO; they come out at debug, and the Raft type logs leadership changes itself. WARN and
// ERROR keep their level. It is safe for concurrent use and keeps no mutable state
// besides the name chain, which With and Named copy.
type raftLogger struct {
	log   *slog.Logger
	name  string
	args  []any
	quiet *repeatLimiter // shared by every logger derived from one newRaftLogger
}

// newRaftLogger returns an hclog.Logger writing to l (already narrowed by the caller).
func newRaftLogger(l *slog.Logger) hclog.Logger {
	return &raftLogger{log: l, quiet: &repeatLimiter{last: map[string]time.Time{}}}
}

// isRepeatMessage reports whether msg is one of the raft lines repeated every few hundred
// milliseconds while a peer is down or partitioned. The first of each (per peer) in
// repeatWindow is logged at warn, the rest at debug.
func isRepeatMessage(msg string) bool {
	for _, m := range [...]string{
		"failed to heartbeat to", "failed to appendEntries to", "failed to start pipeline replication to",
		"failed to pipeline appendEntries", "failed to make requestVote RPC", "failed to contact",
		"rejecting vote request since we have a leader", "rejecting pre-vote request since we have a leader",
		"heartbeat timeout reached, not part of a stable configuration",
		"rejecting vote request since node is not in configuration",
		"rejecting pre-vote request since node is not in configuration",
	} {
		if strings.HasPrefix(msg, m) {
			return true
		}
	}
	return false
}

const repeatWindow = 30 * time.Second

// repeatLimiter remembers when each repeated line was last logged at warn.
type repeatLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// demote reports whether a line should go to debug because it repeats.
func (q *repeatLimiter) demote(msg string, args []any) bool {
	if !isRepeatMessage(msg) {
		return false
	}
	key := msg
	for i := 0; i+1 < len(args); i += 2 {
		switch args[i] {
		case "peer", "server-id", "target", "from", "candidate":
			key += "|" + fmt.Sprint(args[i+1])
		}
	}
	now := time.Now()
	q.mu.Lock()
	defer q.mu.Unlock()
	if now.Sub(q.last[key]) < repeatWindow {
		return true
	}
	if len(q.last) > 1024 {
		clear(q.last)
	}
	q.last[key] = now
	return false
}

// slogLevel maps an hclog level, demoting INFO.
func hclogToSlog(l hclog.Level) slog.Level {
	switch l {
	case hclog.Trace, hclog.Debug, hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelDebug
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (l *raftLogger) Log(level hclog.Level, msg string, args ...any) {
	lv := hclogToSlog(level)
	if lv > slog.LevelDebug && l.quiet != nil && l.quiet.demote(msg, args) {
		lv = slog.LevelDebug
	}
	ctx := context.Background()
	if !l.log.Enabled(ctx, lv) {
		return
	}
	attrs := make([]any, 0, len(l.args)+len(args)+2)
	if l.name != "" {
		attrs = append(attrs, "logger", l.name)
	}
	attrs = append(attrs, l.args...)
	attrs = append(attrs, hclogPairs(args)...)
	l.log.Log(ctx, lv, msg, attrs...)
}

// pairs makes hclog's key/value list safe for slog: an odd trailing value gets a key,
// and non-string keys are formatted.
func hclogPairs(args []any) []any {
	out := make([]any, 0, len(args)+1)
	for i := 0; i < len(args); i += 2 {
		if i+1 >= len(args) {
			out = append(out, "extra", args[i])
			break
		}
		k, ok := args[i].(string)
		if !ok {
			k = fmt.Sprint(args[i])
		}
		out = append(out, k, args[i+1])
	}
	return out
}

func (l *raftLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }
func (l *raftLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }
func (l *raftLogger) Info(msg string, args ...any)  { l.Log(hclog.Info, msg, args...) }
func (l *raftLogger) Warn(msg string, args ...any)  { l.Log(hclog.Warn, msg, args...) }
func (l *raftLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *raftLogger) enabled(lv slog.Level) bool { return l.log.Enabled(context.Background(), lv) }

func (l *raftLogger) IsTrace() bool { return false }
func (l *raftLogger) IsDebug() bool { return l.enabled(slog.LevelDebug) }
func (l *raftLogger) IsInfo() bool  { return l.enabled(slog.LevelDebug) }
func (l *raftLogger) IsWarn() bool  { return l.enabled(slog.LevelWarn) }
func (l *raftLogger) IsError() bool { return l.enabled(slog.LevelError) }

func (l *raftLogger) ImpliedArgs() []any { return append([]any(nil), l.args...) }

func (l *raftLogger) With(args ...any) hclog.Logger {
	c := *l
	c.args = append(append([]any(nil), l.args...), hclogPairs(args)...)
	return &c
}

func (l *raftLogger) Name() string { return l.name }

func (l *raftLogger) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

func (l *raftLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel is ignored: the slog handler decides what is written.
func (l *raftLogger) SetLevel(hclog.Level) {}

func (l *raftLogger) GetLevel() hclog.Level {
	switch {
	case l.enabled(slog.LevelDebug):
		return hclog.Debug
	case l.enabled(slog.LevelWarn):
		return hclog.Warn
	default:
		return hclog.Error
	}
}

func (l *raftLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

func (l *raftLogger) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return raftLogWriter{l}
}

// raftLogWriter turns lines of a standard logger into debug records ("[WARN]" and
// "[ERR]" prefixes keep their level).
type raftLogWriter struct{ l *raftLogger }

func (w raftLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimRight(string(p), "\r\n")
	level := hclog.Debug
	for prefix, lv := range map[string]hclog.Level{"[WARN]": hclog.Warn, "[ERR]": hclog.Error, "[ERROR]": hclog.Error} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			level, line = lv, strings.TrimSpace(rest)
		}
	}
	w.l.Log(level, line)
	return len(p), nil
}

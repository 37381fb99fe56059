package cluster

import (
	"strings"
	"testing"
)

func TestMemberlistLogger(t *testing.T) {
	tests := []struct {
		line string
		want []string // in the slog output
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1", []string{"level=DEBUG", `msg="Stream connection from=127.0.0.1:1"`}},
		{"[INFO] memberlist: Suspect n2 has failed, no acks received", []string{"level=INFO", `msg="Suspect n2 has failed`}},
		{"[WARN] memberlist: Refuting a dead message (from: n1)", []string{"level=WARN", "Refuting"}},
		{"[ERR] memberlist: Failed to send ack: boom", []string{"level=ERROR", "Failed to send ack"}},
		{"[ERROR] memberlist: Failed to compress payload: x", []string{"level=ERROR"}},
		{"Err: Could not set the deadline: x", []string{"level=ERROR", "Could not set the deadline"}},
		{"no prefix at all", []string{"level=INFO", "no prefix at all"}},
		{"[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=127.0.0.1:5555",
			[]string{"level=WARN", "refused gossip", "key this agent does not have", "peer=127.0.0.1:5555", "same cluster.key"}},
		{`[ERR] memberlist: discarding stream with unacceptable label "other": from=127.0.0.1:6666`,
			[]string{"level=WARN", "refused gossip", "another cluster", "peer_cluster=other", "cluster=prod", "peer=127.0.0.1:6666"}},
		{`[ERR] memberlist: discarding packet with unacceptable label "": from=127.0.0.1:7777`,
			[]string{"level=WARN", "another cluster", `peer_cluster=""`}},
		{"[ERR] memberlist: failed to receive: encryption is configured but remote state is not encrypted from=127.0.0.1:1",
			[]string{"level=WARN", "unencrypted gossip"}},
		{"[DEBUG] memberlist: Failed to join 127.0.0.1:1: No installed keys could decrypt the message",
			[]string{"level=DEBUG", "Failed to join"}},
	}
	for _, tt := range tests {
		buf := &syncBuffer{}
		l := newMemberlistLogger(testLogger(buf), "prod")
		l.Print(tt.line)
		out := buf.String()
		for _, w := range tt.want {
			if !strings.Contains(out, w) {
				t.Errorf("%q logged as %q, want it to contain %q", tt.line, out, w)
			}
		}
		if strings.Count(out, "\n") != 1 {
			t.Errorf("%q logged %d lines, want 1", tt.line, strings.Count(out, "\n"))
		}
	}
}

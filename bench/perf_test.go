package bench

import (
	"strings"
	"testing"
)

func TestPerfComponents(t *testing.T) {
	report := `# Samples: 4K of event 'cpu-clock:ppp'
#
    68.24%     0.12%  [.] net/http.(*conn).serve                         -      -
    56.62%     0.05%  [.] github.com/picket-dev/picket/agent.(*Agent).handlePostLogs   -      -
    56.60%     0.00%  [.] github.com/picket-dev/picket/agent.(*Agent).handlePostLogs-fm   -      -
    19.33%     0.00%  [.] github.com/hashicorp/raft.(*raftState).goFunc.func1   -      -
    17.65%     0.28%  [k] do_syscall_64                                  -      -
    16.24%    16.24%  [.] encoding/json.(*Decoder).readValue             -      -
     9.38%     0.18%  [.] runtime.mallocgc                               -      -
`
	got := perfComponents(report, 3)
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	want := []string{"net/http.(*conn).serve", "agent.(*Agent).handlePostLogs", "encoding/json.(*Decoder).readValue"}
	if len(lines) != 1+len(want) {
		t.Fatalf("perfComponents kept %d lines, want header + %d:\n%s", len(lines), len(want), got)
	}
	for i, w := range want {
		if !strings.HasSuffix(lines[i+1], w) {
			t.Errorf("line %d = %q, want it to end with %q", i+1, lines[i+1], w)
		}
	}
	if !strings.Contains(lines[3], "16.24% 16.24%") {
		t.Errorf("shares not kept: %q", lines[3])
	}
}

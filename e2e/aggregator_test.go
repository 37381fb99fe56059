package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// leaderOf returns the aggregator's name as every given node reports it, once they agree.
func leaderOf(t *testing.T, d time.Duration, nodes ...*node) string {
	t.Helper()
	var name string
	eventually(t, d, "all nodes agree on one aggregator", func() error {
		name = ""
		for _, n := range nodes {
			code, body, err := get(context.Background(), n.http+"/v1/leader")
			if err != nil || code != 200 {
				return fmt.Errorf("%s: /v1/leader %d %s %v", n.name, code, body, err)
			}
			var l struct{ Name string }
			json.Unmarshal(body, &l)
			if name != "" && l.Name != name {
				return fmt.Errorf("%s says %s, another says %s", n.name, l.Name, name)
			}
			name = l.Name
		}
		return nil
	})
	return name
}

// postBatch posts one batch with its idempotency key to node n.
func postBatch(ctx context.Context, n *node, key string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, "POST", n.http+"/v1/logs", bytes.NewReader(body))
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Accepted int
		Error    string
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: HTTP %d: %s", n.name, resp.StatusCode, out.Error)
	}
	return nil
}

// TestAggregatorProcesses: three real agents elect one aggregator; 3000 records posted in
// batches to random agents while the aggregator is killed with SIGKILL midway are all
// acknowledged and returned exactly once; writes are accepted again within about a second
// (fast profile); filters and the global registry work from any node.
func TestAggregatorProcesses(t *testing.T) {
	n1 := startNode(t, "n1", "agg", testKey, nil)
	n2 := startNode(t, "n2", "agg", testKey, []string{n1.gossip})
	n3 := startNode(t, "n3", "agg", testKey, []string{n1.gossip})
	nodes := []*node{n1, n2, n3}
	leader := leaderOf(t, 30*time.Second, nodes...)
	t.Logf("formation: aggregator %s", leader)

	const batches, perBatch = 60, 50
	var (
		acked     atomic.Int64
		killedAt  atomic.Int64 // unix nanos
		firstOK   atomic.Int64 // unix nanos of the first ack after the kill
		dead      atomic.Pointer[node]
		wg        sync.WaitGroup
		next      atomic.Int64
		failures  atomic.Int64
		deadlines = time.Now().Add(90 * time.Second)
	)
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for {
				b := int(next.Add(1)) - 1
				if b >= batches {
					return
				}
				recs := make([]map[string]any, perBatch)
				for i := range recs {
					level := "info"
					if i%10 == 0 {
						level = "error"
					}
					recs[i] = map[string]any{"level": level, "message": fmt.Sprintf("e2e-batch %d record %d", b, i)}
				}
				body, _ := json.Marshal(recs)
				key := fmt.Sprintf("e2e-%d", b)
				for {
					if time.Now().After(deadlines) {
						t.Errorf("batch %d never acknowledged", b)
						return
					}
					n := nodes[rng.IntN(3)]
					if n == dead.Load() {
						continue
					}
					started := time.Now().UnixNano()
					ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
					err := postBatch(ctx, n, key, body)
					cancel()
					if err == nil {
						acked.Add(1)
						// Writes are "accepted again" with the first post that started after the kill.
						if k := killedAt.Load(); k != 0 && started > k {
							firstOK.CompareAndSwap(0, time.Now().UnixNano())
						}
						break
					}
					failures.Add(1)
					time.Sleep(20 * time.Millisecond)
				}
				if b == batches/2 && killedAt.Load() == 0 {
					for _, n := range nodes {
						if n.name == leader {
							dead.Store(n)
							killedAt.Store(time.Now().UnixNano())
							n.p.cmd.Process.Signal(syscall.SIGKILL)
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if acked.Load() != batches {
		t.Fatalf("acknowledged %d of %d batches", acked.Load(), batches)
	}
	recovery := time.Duration(firstOK.Load() - killedAt.Load())
	t.Logf("leader %s killed after %d batches; writes accepted again after %s; %d failed attempts retried",
		leader, batches/2, recovery.Round(time.Millisecond), failures.Load())
	if recovery > 5*time.Second {
		t.Errorf("writes accepted again only after %s; the fast profile promises about 1 s", recovery)
	}

	var alive []*node
	for _, n := range nodes {
		if n != dead.Load() {
			alive = append(alive, n)
		}
	}
	newLeader := leaderOf(t, 15*time.Second, alive...)
	var recs []struct {
		Message, Node, Level string
		Seq                  uint64
	}
	eventually(t, 15*time.Second, "every acknowledged record returned exactly once", func() error {
		code, body, err := get(context.Background(), alive[0].http+"/v1/logs?limit=10000&contains=e2e-batch")
		if err != nil || code != 200 {
			return fmt.Errorf("GET /v1/logs: %d %v", code, err)
		}
		recs = recs[:0]
		json.Unmarshal(body, &recs)
		seen := map[string]int{}
		for _, r := range recs {
			seen[r.Message]++
		}
		dups := 0
		for _, c := range seen {
			if c > 1 {
				dups++
			}
		}
		if len(seen) != batches*perBatch || dups > 0 {
			return fmt.Errorf("%d distinct records of %d, %d duplicated", len(seen), batches*perBatch, dups)
		}
		return nil
	})
	t.Logf("records: acknowledged %d, returned %d, duplicated 0; new aggregator %s", batches*perBatch, len(recs), newLeader)

	// picket logs --level error --node N filters.
	filterNode := alive[1].name
	out, err := alive[0].cli(t, "logs", "--level", "error", "--node", filterNode, "--contains", "e2e-batch", "--limit", "10000", "-o", "json")
	if err != nil {
		t.Fatalf("picket logs: %v", err)
	}
	var filtered []struct{ Level, Node string }
	json.Unmarshal([]byte(out), &filtered)
	if len(filtered) == 0 {
		t.Errorf("picket logs --level error --node %s returned nothing", filterNode)
	}
	for _, r := range filtered {
		if r.Level != "error" || r.Node != filterNode {
			t.Fatalf("picket logs --level error --node %s returned %+v", filterNode, r)
		}
	}

	// The global registry: registered on one node, found from another, refused to a second owner.
	if out, err := alive[0].cli(t, "registry", "register", "db-primary", "10.0.0.5:5432"); err != nil {
		t.Fatalf("registry register: %v %s", err, out)
	}
	out, err = alive[1].cli(t, "registry", "whereis", "db-primary")
	if err != nil || !strings.Contains(out, "db-primary is at "+alive[0].name) {
		t.Errorf("registry whereis from %s: %v %q", alive[1].name, err, out)
	}
	if out, err := alive[1].cli(t, "registry", "register", "db-primary"); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("a second owner must be refused with 409: %v %q", err, out)
	}
	out, err = alive[1].cli(t, "leader")
	if err != nil || !strings.Contains(out, "aggregator "+newLeader) {
		t.Errorf("picket leader: %v %q", err, out)
	}
}

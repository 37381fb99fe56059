package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/picket-dev/picket/internal/api"
	"github.com/picket-dev/picket/internal/logstore"
)

// waitLeader waits until every agent names the same aggregator and returns its index.
func (tc *testCluster) waitLeader(t *testing.T) int {
	t.Helper()
	var name string
	waitFor(t, 15*time.Second, func() string {
		name = ""
		for _, url := range tc.urls {
			var l api.Leader
			if code := getJSON(t, url+"/v1/leader", &l); code != 200 {
				return fmt.Sprintf("%s: /v1/leader %d", url, code)
			}
			if name != "" && l.Name != name {
				return fmt.Sprintf("leaders disagree: %s and %s", name, l.Name)
			}
			name = l.Name
		}
		return ""
	})
	for i, a := range tc.agents {
		if a.Config().NodeName == name {
			return i
		}
	}
	t.Fatalf("leader %q is not an agent", name)
	return -1
}

func postLogs(t *testing.T, url, key string, recs []api.LogRecord) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/v1/logs", strings.NewReader(mustJSON(recs)))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, b.String()
}

func TestAggregatorLogs(t *testing.T) {
	tc := startCluster(t, "", 0.1, 0.2, 0.3)
	tc.waitLeader(t)

	// 60 posts of 20 records to every agent in turn, some retried with their key.
	var wg sync.WaitGroup
	for p := range 60 {
		wg.Go(func() {
			recs := make([]api.LogRecord, 20)
			for i := range recs {
				level := "info"
				if i%10 == 0 {
					level = "error"
				}
				recs[i] = api.LogRecord{Level: level, Message: fmt.Sprintf("post %d record %d", p, i), Attrs: map[string]string{"p": fmt.Sprint(p)}}
			}
			key := fmt.Sprintf("key-%d", p)
			url := tc.urls[p%3]
			if code, body := postLogs(t, url, key, recs); code != 200 || !strings.Contains(body, `"accepted":20`) {
				t.Errorf("post %d: %d %s", p, code, body)
			}
			if p%4 == 0 { // a retry, to another agent: committed at most once
				if code, body := postLogs(t, tc.urls[(p+1)%3], key, recs); code != 200 || !strings.Contains(body, `"accepted":20`) {
					t.Errorf("retry of post %d: %d %s", p, code, body)
				}
			}
		})
	}
	wg.Wait()

	var all []logstore.Record
	waitFor(t, 10*time.Second, func() string {
		all = nil
		getJSON(t, tc.urls[1]+"/v1/logs?limit=10000&contains=post", &all)
		if len(all) != 1200 {
			return fmt.Sprintf("%d records, want 1200", len(all))
		}
		return ""
	})
	seen := map[string]bool{}
	for _, r := range all {
		if seen[r.Message] {
			t.Fatalf("record %q returned twice", r.Message)
		}
		seen[r.Message] = true
	}
	var errs []logstore.Record
	getJSON(t, tc.urls[2]+"/v1/logs?limit=10000&level=error&node=n1&contains=post", &errs)
	if len(errs) != 40 {
		t.Errorf("level=error node=n1: %d records, want 40", len(errs))
	}
	for _, r := range errs {
		if r.Level != "error" || r.Node != "n1" {
			t.Errorf("filtered record %+v", r)
		}
	}
	// Bad input: 400 with the record named; a body over the limit: 413.
	if code, body := postLogs(t, tc.urls[0], "", []api.LogRecord{{Level: "loud", Message: "x"}}); code != 400 || !strings.Contains(body, "record 0") {
		t.Errorf("bad level: %d %s", code, body)
	}
	big := []api.LogRecord{{Level: "info", Message: strings.Repeat("x", maxLogsBody)}}
	if code, _ := postLogs(t, tc.urls[0], "", big); code != 413 {
		t.Errorf("oversized body: %d, want 413", code)
	}
}

func TestAggregatorFollowAndRegistry(t *testing.T) {
	tc := startCluster(t, "", 0.1, 0.2, 0.3)
	tc.waitLeader(t)

	// follow=true on n2 streams a record posted on n3.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", tc.urls[1]+"/v1/logs?follow=true&contains=followme", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if code, body := postLogs(t, tc.urls[2], "", []api.LogRecord{{Level: "warn", Message: "followme please"}}); code != 200 {
		t.Fatalf("post: %d %s", code, body)
	}
	sc := bufio.NewScanner(resp.Body)
	got := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: ") && strings.Contains(sc.Text(), "followme please") {
			got = true
			break
		}
	}
	if !got {
		t.Fatalf("follow stream ended without the record: %v", sc.Err())
	}

	// Registry: first come wins, found from anywhere, released on unregister.
	if code, raw := sendJSON(t, "PUT", tc.urls[0]+"/v1/registry/db-primary", api.RegisterRequest{Value: "10.0.0.5:5432"}, nil); code != 200 {
		t.Fatalf("register: %d %s", code, raw)
	}
	if code, raw := sendJSON(t, "PUT", tc.urls[1]+"/v1/registry/db-primary", api.RegisterRequest{Value: "other"}, nil); code != 409 {
		t.Fatalf("second register: %d %s, want 409", code, raw)
	}
	var reg api.Registration
	if code := getJSON(t, tc.urls[2]+"/v1/registry/db-primary", &reg); code != 200 || reg.Owner != "n1" || reg.Value != "10.0.0.5:5432" {
		t.Fatalf("whereis from n3: %d %+v", code, reg)
	}
	var list []api.Registration
	if getJSON(t, tc.urls[1]+"/v1/registry", &list); len(list) != 1 {
		t.Fatalf("list: %+v", list)
	}
	if code, raw := sendJSON(t, "DELETE", tc.urls[2]+"/v1/registry/db-primary", nil, nil); code != 200 {
		t.Fatalf("unregister: %d %s", code, raw)
	}
	if code, _ := do(t, "GET", tc.urls[0]+"/v1/registry/db-primary", "", nil); code != 404 {
		t.Fatalf("whereis after unregister: %d, want 404", code)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

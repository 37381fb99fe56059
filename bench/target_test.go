package bench

import (
	"context"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

func TestTarget(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	file := filepath.Join(t.TempDir(), "addrs.json")
	done := make(chan error, 1)
	go func() { done <- RunTarget(ctx, file) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunTarget: %v", err)
		}
	}()
	var addrs TargetAddrs
	if err := pollUntil(t.Context(), 5*time.Second, func() bool {
		b, err := readFile(file)
		return err == nil && jsonUnmarshal(b, &addrs) == nil
	}); err != nil {
		t.Fatalf("addresses file: %v", err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	get := func(path string) (int, string) {
		resp, err := client.Get("http://" + addrs.HTTP + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/ok"); code != 200 || body != "ok" {
		t.Errorf("/ok = %d %q", code, body)
	}
	get("/c/one")
	get("/c/one")
	if code, body := get("/slow/two?d=10ms"); code != 200 || body != "late" {
		t.Errorf("/slow = %d %q", code, body)
	}
	if code, _ := get("/slow/x?d=bad"); code != http.StatusBadRequest {
		t.Errorf("/slow with a bad duration = %d, want 400", code)
	}

	// A client that gives up before the slow answer frees the handler.
	short := &http.Client{Timeout: 50 * time.Millisecond, Transport: &http.Transport{}}
	if _, err := short.Get("http://" + addrs.HTTP + "/slow/three?d=1h"); err == nil {
		t.Error("GET /slow?d=1h answered within 50ms")
	}
	short.CloseIdleConnections()

	arr, err := Arrivals(t.Context(), addrs.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	if len(arr["one"]) != 2 || len(arr["two"]) != 1 || len(arr["three"]) != 1 {
		t.Errorf("arrivals = %v", arr)
	}

	c, err := net.DialTimeout("tcp", addrs.TCP, time.Second)
	if err != nil {
		t.Fatalf("dial the TCP service: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the TCP service should close at once; read %d, %v", n, err)
	}
	c.Close()
}

package bench

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBareRaftIngestAndFailover(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	lt, err := NewBareRaft(ctx, t.TempDir(), RaftProfileFast)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := lt.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := lt.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}()
	res, err := MeasureIngest(ctx, lt, 8, 4, 256, 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Records == 0 || res.Records != 4*res.Entries || len(res.Latencies) != int(res.Entries) {
		t.Errorf("ingest: %d records, %d entries, %d latencies", res.Records, res.Entries, len(res.Latencies))
	}
	if res.Lost != 0 || res.Errors != 0 {
		t.Errorf("ingest lost %d records, %d errors", res.Lost, res.Errors)
	}
	n, err := lt.Committed(ctx)
	if err != nil || n < res.Records {
		t.Errorf("Committed = %d, %v; want at least %d", n, err, res.Records)
	}

	d, err := MeasureFailover(ctx, lt)
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d > 20*time.Second {
		t.Errorf("failover took %s", d)
	}
	// The two survivors still hold every record.
	after, err := lt.Committed(ctx)
	if err != nil || after < n {
		t.Errorf("Committed after failover = %d, %v; want at least %d", after, err, n)
	}
}

func TestBareRaftNoLeader(t *testing.T) {
	b := &BareRaft{}
	if err := b.Append(t.Context(), [][]byte{{1}}); !errors.Is(err, ErrNoLeader) {
		t.Errorf("Append without nodes = %v, want ErrNoLeader", err)
	}
	if err := b.KillLeader(t.Context()); !errors.Is(err, ErrNoLeader) {
		t.Errorf("KillLeader without nodes = %v, want ErrNoLeader", err)
	}
}

func TestEncodeRecords(t *testing.T) {
	b := encodeRecords([][]byte{[]byte("ab"), []byte("c")})
	want := []byte{0, 0, 0, 2, 0, 0, 0, 2, 'a', 'b', 0, 0, 0, 1, 'c'}
	if string(b) != string(want) {
		t.Errorf("encodeRecords = %v, want %v", b, want)
	}
}

package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: targets, raft nodes,
// gossip agents and process waiters must all be stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

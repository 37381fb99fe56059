package checks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine is left running after them:
// probers, servers started by tests and the scheduler must all clean up.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

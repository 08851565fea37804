package hub

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if any goroutine outlives them: every
// connection, writer, ping and test client must have ended.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

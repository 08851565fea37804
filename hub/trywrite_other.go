//go:build !unix

package hub

// tryWrite is unused where there are no non-blocking writes: every write
// goes through a writer goroutine.
type tryWrite struct{}

// writeNow writes nothing: the writer goroutine does.
func (c *conn) writeNow(b []byte) (int, error) { return 0, nil }

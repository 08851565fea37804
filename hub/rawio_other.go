//go:build !unix

package hub

// tryWrite is unused where there are no non-blocking writes: every write
// goes through a writer goroutine.
type tryWrite struct{}

// tryRead is unused: every read blocks.
type tryRead struct{}

// writevNow writes nothing: the writer goroutine does.
func (c *conn) writevNow(pre, b []byte) (int, error) { return 0, nil }

// readSome reads with a blocking Read, holding a buffer while it waits.
func (c *conn) readSome() (*[]byte, int, error) { return c.readBlocking() }

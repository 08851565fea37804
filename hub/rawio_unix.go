//go:build unix

package hub

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// tryWrite writes to a socket without ever waiting: what the kernel's send
// buffer takes now is written, the rest is left to a writer goroutine. It
// goes through syscall.RawConn.Write, which holds the socket's write lock,
// so it never interleaves with another write on the socket.
type tryWrite struct {
	pre []byte // written ahead of b in the same call (writev), if set
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool // do, bound once per connection
}

func (t *tryWrite) do(fd uintptr) bool {
	for {
		var n int
		var err error
		if t.pre != nil {
			n, err = unix.Writev(int(fd), [][]byte{t.pre, t.b})
		} else {
			n, err = syscall.Write(int(fd), t.b)
		}
		if err == syscall.EINTR {
			continue
		}
		t.n, t.err = max(n, 0), err
		return true // never wait for the socket to become writable
	}
}

// writevNow writes what of pre and then b (pre may be nil) the socket
// takes without blocking, in one system call. It reports how much that
// was, of both, and an error only when the socket failed: a full send
// buffer is no error, just a short count.
func (c *conn) writevNow(pre, b []byte) (int, error) {
	t := &c.tw
	if t.fn == nil {
		t.fn = t.do
	}
	t.pre, t.b = pre, b
	err := c.rc.Write(t.fn)
	n, werr := t.n, t.err
	t.pre, t.b, t.n, t.err = nil, nil, 0, nil
	if err != nil {
		return 0, err
	}
	if werr != nil && !errors.Is(werr, syscall.EAGAIN) {
		return n, werr
	}
	return n, nil
}

// tryRead is readSome's state, kept in the connection (readerState) so
// that a read allocates nothing: a closure over locals put four objects on
// the heap for every read, and kept them there while the reader waited.
type tryRead struct {
	buf *[]byte
	n   int
	err error
	fn  func(fd uintptr) bool // do, bound once per connection
}

func (t *tryRead) do(fd uintptr) bool {
	if t.buf == nil {
		t.buf = readPool.Get().(*[]byte)
	}
	for {
		t.n, t.err = syscall.Read(int(fd), *t.buf)
		if t.err != syscall.EINTR {
			break
		}
	}
	if t.err == syscall.EAGAIN {
		readPool.Put(t.buf)
		t.buf = nil
		return false // wait until the socket is readable
	}
	return true
}

// readSome waits until the socket has bytes to read and reads what is
// there into a buffer from readPool, which the caller puts back. While it
// waits it holds no buffer: RawConn.Read parks the goroutine on the
// socket's readiness, and a buffer is taken only once a read can succeed.
func (c *conn) readSome() (*[]byte, int, error) {
	if c.rc == nil {
		return c.readBlocking()
	}
	t := &c.rd.tr
	if t.fn == nil {
		t.fn = t.do
	}
	err := c.rc.Read(t.fn)
	buf, n, rerr := t.buf, t.n, t.err
	t.buf, t.n, t.err = nil, 0, nil
	if err == nil && rerr == nil && n == 0 {
		err = io.EOF
	}
	if err == nil && rerr != nil {
		err = os.NewSyscallError("read", rerr)
	}
	if err != nil {
		if buf != nil {
			readPool.Put(buf)
		}
		return nil, 0, err
	}
	return buf, n, nil
}

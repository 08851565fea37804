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

// readSome waits until the socket has bytes to read and reads what is
// there into a buffer from readPool, which the caller puts back. While it
// waits it holds no buffer: RawConn.Read parks the goroutine on the
// socket's readiness, and a buffer is taken only once a read can succeed.
func (c *conn) readSome() (*[]byte, int, error) {
	if c.rc == nil {
		return c.readBlocking()
	}
	var (
		buf  *[]byte
		n    int
		rerr error
	)
	err := c.rc.Read(func(fd uintptr) bool {
		if buf == nil {
			buf = readPool.Get().(*[]byte)
		}
		for {
			n, rerr = syscall.Read(int(fd), *buf)
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			readPool.Put(buf)
			buf = nil
			return false // wait until the socket is readable
		}
		return true
	})
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

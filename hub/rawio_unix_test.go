//go:build unix

package hub

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// A read on a loopback socket allocates nothing: the state readSome keeps
// while the reader waits lives in the connection, and the buffer comes
// from readPool. (Not under the race detector, whose sync.Pool drops what
// it is given at random.)
func TestReadSomeAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	client, server := tcpPair(t)
	c := &conn{raw: server}
	c.rc, _ = server.(*net.TCPConn).SyscallConn()
	msg := []byte("ping")
	read := func() {
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		buf, n, err := c.readSome()
		if err != nil || n != len(msg) {
			t.Fatalf("read %d bytes, %v", n, err)
		}
		readPool.Put(buf)
	}
	read() // binds the read function and fills the pool
	if allocs := testing.AllocsPerRun(200, read); allocs != 0 {
		t.Errorf("%v allocations per read, want 0", allocs)
	}
}

// readSome waits for bytes that are not there yet, and reports the peer's
// close as io.EOF.
func TestReadSomeWaitsThenSeesEOF(t *testing.T) {
	client, server := tcpPair(t)
	c := &conn{raw: server}
	c.rc, _ = server.(*net.TCPConn).SyscallConn()
	go func() { // ends after one write and the close
		time.Sleep(20 * time.Millisecond)
		client.Write([]byte("late"))
		time.Sleep(20 * time.Millisecond)
		client.Close()
	}()
	buf, n, err := c.readSome()
	if err != nil || string((*buf)[:n]) != "late" {
		t.Fatalf("got %q, %v; want the late bytes", (*buf)[:n], err)
	}
	readPool.Put(buf)
	if _, _, err := c.readSome(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the peer closed: got %v, want io.EOF", err)
	}
}

// tcpPair is a connected loopback TCP pair, closed at the end of the test.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

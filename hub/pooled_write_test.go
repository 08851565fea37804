//go:build unix

package hub

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

// Messages in helloPool buffers survive a socket that takes them only in
// part: the inline writer stops inside a frame (its rest goes to a writer
// goroutine) and puts the rest of its batch back in the queue. Every free
// buffer in the pool is scribbled over meanwhile, so one released while
// still queued, or still being written, arrives as XXXX.
func TestPooledBuffersSurvivePartialWrites(t *testing.T) {
	client, server := tcpPair(t)
	server.(*net.TCPConn).SetWriteBuffer(16 << 10)
	client.(*net.TCPConn).SetReadBuffer(64 << 10)
	h := &Hub{cfg: Config{SendQueue: 1 << 20, WriteTimeout: 20 * time.Second},
		log: slog.New(slog.DiscardHandler), obs: nopObserver{}}
	c := &conn{h: h, raw: server, held: true}
	c.rc, _ = server.(*net.TCPConn).SyscallConn()

	// Each message is big enough that the socket cannot take it whole,
	// small enough (maxPooledRoster) for release to pool its buffer, and
	// different from the others all along.
	const n = 12
	body := func(i int) string {
		return fmt.Sprintf(`{"id":%d,"pad":%q}`, i, strings.Repeat(string(rune('a'+i)), 200<<10))
	}
	scribble := func() {
		for range 8 {
			p := helloPool.Get().(*[]byte)
			b := (*p)[:cap(*p)]
			for j := range b {
				b[j] = 'X'
			}
			helloPool.Put(p)
		}
	}
	put := func(i int) {
		buf := helloPool.Get().(*[]byte)
		wire := append(append((*buf)[:0], make([]byte, maxFrameHeader)...), body(i)...)
		*buf = wire
		c.enqueue(outMsg{b: wire[maxFrameHeader:], frame: framed(wire), own: buf})
	}
	// A batch held back, as hello holds a queue, then let go at once:
	// the inline writer writes part of its first frame and requeues the
	// rest of the batch.
	for i := range n / 2 {
		put(i)
	}
	c.mu.Lock()
	c.held = false
	c.unlockQueued(false)
	scribble()
	for i := n / 2; i < n; i++ {
		put(i)
		scribble()
	}
	time.Sleep(50 * time.Millisecond) // the writer goroutine blocks on the full socket
	scribble()

	r := bufio.NewReader(client)
	client.SetReadDeadline(time.Now().Add(30 * time.Second))
	for i := range n {
		var hd [2]byte
		if _, err := io.ReadFull(r, hd[:]); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		size := uint64(hd[1] & 0x7f)
		switch size {
		case 126:
			var l [2]byte
			io.ReadFull(r, l[:])
			size = uint64(binary.BigEndian.Uint16(l[:]))
		case 127:
			var l [8]byte
			io.ReadFull(r, l[:])
			size = binary.BigEndian.Uint64(l[:])
		}
		p := make([]byte, size)
		if _, err := io.ReadFull(r, p); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if hd[0] != 0x81 || string(p) != body(i) {
			j := 0
			for j < len(p) && j < len(body(i)) && p[j] == body(i)[j] {
				j++
			}
			t.Fatalf("frame %d (header %x, %d bytes) differs from message %d at byte %d: %.40q", i, hd[0], size, i, j, p[j:])
		}
	}
	c.wg.Wait()
}

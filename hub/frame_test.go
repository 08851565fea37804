package hub

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// TestFramesReadByALibraryClient: frames built here, of every length
// encoding, reach a coder/websocket client intact when written straight to
// the hijacked connection, while the library answers the same client's
// pings on the same connection.
func TestFramesReadByALibraryClient(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 127, 1000, 0xFFFF, 0x10000, 200000}
	payload := func(i, n int) []byte {
		return bytes.Repeat([]byte{byte('a' + i%26)}, n)
	}
	const rounds = 20

	serverDone := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb := &smallBuffers{ResponseWriter: w}
		ws, err := websocket.Accept(sb, r, nil)
		if err != nil {
			serverDone <- err
			return
		}
		defer ws.CloseNow()
		defer sb.conn.Close() // the library's Conn does not own it (libConn)
		// The 101 is the hub's to send (with its first frame): send it.
		if _, err := sb.conn.Write(sb.response); err != nil {
			serverDone <- err
			return
		}
		// The library reads (and answers pings) while frames go out.
		ctx := ws.CloseRead(context.Background())
		for round := range rounds {
			for i, n := range sizes {
				frame, _ := frameOf(payload(i, n))
				if _, err := sb.conn.Write(frame); err != nil {
					serverDone <- fmt.Errorf("round %d, size %d: %w", round, n, err)
					return
				}
			}
			// Three messages packed in one frame, as a writer does.
			msgs := []outMsg{{b: []byte("x")}, {b: []byte("yy")}, {b: payload(0, 300)}}
			frame, n := pack(make([]byte, 0, 64), msgs, maxPack)
			if n != 3 {
				serverDone <- fmt.Errorf("packed %d messages, want 3", n)
				return
			}
			if _, err := sb.conn.Write(frame); err != nil {
				serverDone <- err
				return
			}
		}
		<-ctx.Done() // the client closes when it has read everything
		serverDone <- nil
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)

	// Pings while reading: their pongs share the socket with the frames.
	var wg sync.WaitGroup
	pingCtx, stopPings := context.WithCancel(ctx)
	wg.Add(1)
	go func() { // ends when stopPings is called or a ping fails
		defer wg.Done()
		for pingCtx.Err() == nil {
			if err := c.Ping(pingCtx); err != nil {
				return
			}
		}
	}()

	for round := range rounds {
		for i, n := range sizes {
			typ, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("round %d, size %d: %v", round, n, err)
			}
			if typ != websocket.MessageText || !bytes.Equal(got, payload(i, n)) {
				t.Fatalf("round %d: got a %v message of %d bytes, want text of %d", round, typ, len(got), n)
			}
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := "x\nyy\n" + string(payload(0, 300)); string(got) != want {
			t.Fatalf("round %d: packed frame read as %q", round, got)
		}
	}
	stopPings()
	wg.Wait()
	c.Close(websocket.StatusNormalClosure, "")
	if err := <-serverDone; err != nil {
		t.Fatal(err)
	}
}

// TestEventFramesAreBuiltOnceAndOnlyWhenTaken: a fan-out frames an event
// when its first recipient takes it, once, whichever goroutine asks first;
// an event nobody takes is never framed.
func TestEventFramesAreBuiltOnceAndOnlyWhenTaken(t *testing.T) {
	events := []queues.Event{
		{Seq: 1, Wire: []byte(`{"type":"event","seq":1}`)},
		{Seq: 2, Wire: bytes.Repeat([]byte("x"), 300)}, // a 16-bit length
	}
	f := newEventFrames(events)
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for g := range got {
		wg.Go(func() { got[g] = f.frame(1) })
	}
	wg.Wait()
	for g := range got {
		if &got[g][0] != &got[0][0] {
			t.Fatalf("goroutine %d got a frame of its own: the event was framed more than once", g)
		}
	}
	want, _ := frameOf(events[1].Wire)
	if !bytes.Equal(got[0], want) {
		t.Fatalf("frame = %q, want %q", got[0], want)
	}
	if f.frames[0].b != nil {
		t.Fatal("an event no recipient took was framed")
	}
}

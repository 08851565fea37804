package hub

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/coder/websocket"
)

// maskedFrame builds a frame as a client sends it (RFC 6455 section 5.2):
// masked with key, its length in the shortest form.
func maskedFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n <= 125:
		f = append(f, 0x80|byte(n))
	case n <= 0xFFFF:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

// recorder is a frameSink that writes down what it is told.
type recorder struct {
	got     []string // "text:...", "binary:...", "ping:...", "too big"
	closing bool
}

func (r *recorder) closingNow() bool { return r.closing }
func (r *recorder) message(b []byte, binary bool) {
	kind := "text"
	if binary {
		kind = "binary"
	}
	r.got = append(r.got, kind+":"+string(b))
}
func (r *recorder) ping(p []byte) { r.got = append(r.got, "ping:"+string(p)) }
func (r *recorder) tooBig()       { r.got = append(r.got, "too big"); r.closing = true }

// feed gives stream to consume in the pieces cuts make of it.
func feed(t *testing.T, stream []byte, cuts []int, limit int64) (*recorder, *readState, error) {
	t.Helper()
	st, r := &readState{}, &recorder{}
	at := 0
	for _, c := range append(cuts, len(stream)) {
		// A fresh slice per read: consume must not keep it.
		piece := bytes.Clone(stream[at:c])
		at = c
		if err := consume(st, piece, limit, r); err != nil {
			return r, st, err
		}
		clear(piece)
	}
	return r, st, nil
}

func key(i int) [4]byte { return [4]byte{byte(i), byte(i * 7), 0xA5, byte(i * 13)} }

// TestConsumeSplitAnywhere: a stream of frames of every length form, a
// fragmented message with a ping between its fragments, an empty message,
// and a pong gives the same messages however the reads cut it.
func TestConsumeSplitAnywhere(t *testing.T) {
	long := strings.Repeat("0123456789", 7000) // 70,000 bytes: the 64-bit length form
	mid := strings.Repeat("m", 300)            // the 16-bit form
	var stream []byte
	add := func(fin bool, op byte, p string) {
		stream = append(stream, maskedFrame(fin, op, []byte(p), key(len(stream)))...)
	}
	add(true, opText, `{"id":1,"op":"activity"}`)
	add(true, opText, mid)
	add(false, opText, "frag-")
	add(true, opPing, "are you there")
	add(false, opContinuation, "")
	add(true, opContinuation, "ment")
	add(true, opPong, "")
	add(true, opText, "")
	add(true, opBinary, "\x00\x01")
	add(true, opText, long)
	add(true, opText, "last")
	want := []string{
		`text:{"id":1,"op":"activity"}`, "text:" + mid, "ping:are you there", "text:frag-ment",
		"text:", "binary:\x00\x01", "text:" + long, "text:last",
	}

	check := func(name string, cuts []int) {
		t.Helper()
		r, st, err := feed(t, stream, cuts, 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.Equal(r.got, want) {
			t.Fatalf("%s: got %d items %.200q, want %d", name, len(r.got), r.got, len(want))
		}
		if st.partial != nil || st.msg != nil || st.inMsg {
			t.Fatalf("%s: state left between frames: %d partial bytes, %d message bytes", name, len(st.partial), len(st.msg))
		}
	}
	check("one read", nil)
	for c := 1; c < 400; c++ {
		check(fmt.Sprintf("cut at %d", c), []int{c})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var cuts []int
		for at := 0; ; {
			at += 1 + rng.IntN(600)
			if at >= len(stream) {
				break
			}
			cuts = append(cuts, at)
		}
		check(fmt.Sprintf("random cuts %d", i), cuts)
	}
	bytewise := make([]int, len(stream)-1)
	for i := range bytewise {
		bytewise[i] = i + 1
	}
	check("a byte per read", bytewise)
}

// TestConsumeProtocolErrors: each frame that breaks RFC 6455 is refused
// with its close code, and what follows it is not read.
func TestConsumeProtocolErrors(t *testing.T) {
	text := func(p string) []byte { return maskedFrame(true, opText, []byte(p), key(1)) }
	unmasked := text("hi")
	unmasked[1] &^= 0x80
	unmasked = append(unmasked[:2], unmasked[6:]...)
	rsv := text("hi")
	rsv[0] |= 0x40
	longLen := maskedFrame(true, opText, nil, key(1))
	longLen = append([]byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 0}, longLen[2:]...)
	closeWith := func(p []byte) []byte { return maskedFrame(true, opClose, p, key(2)) }

	for _, c := range []struct {
		name  string
		frame []byte
		code  websocket.StatusCode
	}{
		{"unmasked", unmasked, websocket.StatusProtocolError},
		{"reserved bit", rsv, websocket.StatusProtocolError},
		{"opcode 3", maskedFrame(true, 0x3, nil, key(1)), websocket.StatusProtocolError},
		{"opcode 0xB", maskedFrame(true, 0xB, nil, key(1)), websocket.StatusProtocolError},
		{"fragmented ping", maskedFrame(false, opPing, nil, key(1)), websocket.StatusProtocolError},
		{"126-byte ping", maskedFrame(true, opPing, make([]byte, 126), key(1)), websocket.StatusProtocolError},
		{"continuation first", maskedFrame(true, opContinuation, []byte("x"), key(1)), websocket.StatusProtocolError},
		{"text inside a message", append(maskedFrame(false, opText, []byte("a"), key(1)), text("b")...), websocket.StatusProtocolError},
		{"length with the top bit", longLen, websocket.StatusProtocolError},
		{"close of one byte", closeWith([]byte{3}), websocket.StatusProtocolError},
		{"close code 1005", closeWith([]byte{0x03, 0xED}), websocket.StatusProtocolError},
		{"close code 999", closeWith([]byte{0x03, 0xE7}), websocket.StatusProtocolError},
		{"close code 5000", closeWith([]byte{0x13, 0x88}), websocket.StatusProtocolError},
		{"close reason not UTF-8", closeWith([]byte{0x03, 0xE8, 0xFF}), websocket.StatusInvalidFramePayloadData},
	} {
		t.Run(c.name, func(t *testing.T) {
			stream := append(bytes.Clone(c.frame), text("after")...)
			r, st, err := feed(t, stream, nil, 1<<20)
			var pe *protocolError
			if !errors.As(err, &pe) || pe.code != c.code {
				t.Fatalf("got %v, want a protocol error with %d", err, c.code)
			}
			if slices.Contains(r.got, "text:after") {
				t.Fatal("a frame after the error was read")
			}
			// Later reads are discarded whole.
			if err := consume(st, text("later"), 1<<20, r); err != nil || len(r.got) > 1 {
				t.Fatalf("after the error: %v, %q", err, r.got)
			}
		})
	}
}

// TestConsumeClose: the peer's close frame ends the reading with its code
// and reason; one without a body is 1005.
func TestConsumeClose(t *testing.T) {
	for _, c := range []struct {
		body   []byte
		code   websocket.StatusCode
		reason string
	}{
		{nil, websocket.StatusNoStatusRcvd, ""},
		{[]byte{0x03, 0xE8}, websocket.StatusNormalClosure, ""},
		{append([]byte{0x0F, 0xA0}, "tab closed ✓"...), 4000, "tab closed ✓"},
	} {
		stream := append(maskedFrame(true, opClose, c.body, key(3)), maskedFrame(true, opText, []byte("after"), key(4))...)
		for cut := range len(stream) {
			var cuts []int
			if cut > 0 {
				cuts = []int{cut}
			}
			r, st, err := feed(t, stream, cuts, 1<<20)
			if err != errPeerClosed {
				t.Fatalf("cut %d: got %v, want the peer's close", cut, err)
			}
			if st.closeRx.Code != c.code || st.closeRx.Reason != c.reason || len(r.got) != 0 {
				t.Fatalf("cut %d: got %d %q and %q, want %d %q", cut, st.closeRx.Code, st.closeRx.Reason, r.got, c.code, c.reason)
			}
		}
	}
}

// TestConsumeTooBig: a message over the limit, whole or in fragments, is
// skipped without being kept, and the close frame behind it still counts.
func TestConsumeTooBig(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 5000)
	for name, frames := range map[string][][]byte{
		"one frame": {maskedFrame(true, opText, big, key(1))},
		"fragments": {
			maskedFrame(false, opText, big[:3000], key(1)),
			maskedFrame(false, opContinuation, big[3000:4500], key(2)),
			maskedFrame(true, opContinuation, big[4500:], key(3)),
		},
	} {
		stream := slices.Concat(append(frames,
			maskedFrame(true, opText, []byte("ignored while closing"), key(4)),
			maskedFrame(true, opClose, []byte{0x03, 0xE8}, key(5)))...)
		for _, cuts := range [][]int{nil, {100}, {2000, 4000, 4100}} {
			r, st, err := feed(t, stream, cuts, 4096)
			if err != errPeerClosed || !slices.Equal(r.got, []string{"too big"}) {
				t.Fatalf("%s, cuts %v: got %v and %q, want the close after one too big", name, cuts, err, r.got)
			}
			if len(st.msg) != 0 || cap(st.partial) > 4096 {
				t.Fatalf("%s, cuts %v: kept %d message bytes, %d partial", name, cuts, len(st.msg), cap(st.partial))
			}
		}
	}
}

func TestUnmask(t *testing.T) {
	for n := range 40 {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i * 31)
		}
		k := [4]byte{1, 0x80, 0xFF, 7}
		got := bytes.Clone(p)
		unmask(got, k)
		for i := range p {
			if got[i] != p[i]^k[i%4] {
				t.Fatalf("n=%d: byte %d is %#x, want %#x", n, i, got[i], p[i]^k[i%4])
			}
		}
	}
}

func TestCloseFrame(t *testing.T) {
	if f := closeFrame(websocket.StatusNoStatusRcvd, "x"); !bytes.Equal(f, []byte{0x88, 0}) {
		t.Errorf("1005: got %x, want an empty close frame", f)
	}
	f := closeFrame(websocket.StatusGoingAway, strings.Repeat("é", 100))
	if len(f) > 2+maxControlPayload || f[0] != 0x88 || int(f[1]) != len(f)-2 {
		t.Fatalf("long reason: frame of %d bytes, header %x", len(f), f[:2])
	}
	code, reason, err := parseClose(f[2:])
	if err != nil || code != websocket.StatusGoingAway || !strings.HasPrefix(strings.Repeat("é", 100), reason) {
		t.Errorf("long reason: got %d %q %v", code, reason, err)
	}
}

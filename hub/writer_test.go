package hub

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// qs describes a queue compactly for comparisons: each message as its
// bytes, with a * for view-only ones.
func qs(q *sendQueue) string {
	var parts []string
	for _, m := range q.msgs {
		s := string(m.b)
		if m.viewOnly {
			s += "*"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func ev(seq uint64) outMsg { return outMsg{b: fmt.Appendf(nil, "e%d", seq), seq: seq} }

func pres(seq uint64, agent string) outMsg {
	return outMsg{b: fmt.Appendf(nil, "p%d%s", seq, agent), seq: seq, agent: agent}
}

func TestSendQueuePushBounded(t *testing.T) {
	var q sendQueue
	for i := range uint64(3) {
		if !q.push(ev(i+1), 3) {
			t.Fatalf("push %d: got full, want room", i+1)
		}
	}
	if q.push(ev(4), 3) {
		t.Fatalf("push 4 into a full queue of events: got ok, want refused")
	}
	if got, want := qs(&q), "e1 e2 e3"; got != want {
		t.Errorf("queue: got %q, want %q", got, want)
	}
}

func TestSendQueueCoalescesPresence(t *testing.T) {
	tests := []struct {
		name   string
		queued []outMsg
		push   outMsg
		max    int
		ok     bool
		want   string
	}{
		{
			name:   "newer presence of the same agent replaces the older",
			queued: []outMsg{pres(1, "al"), ev(2), pres(3, "bea")},
			push:   pres(4, "al"), max: 3, ok: true,
			want: "e2 p3bea p4al",
		},
		{
			name:   "duplicates inside the queue make room for any message",
			queued: []outMsg{pres(1, "al"), pres(2, "al"), pres(3, "al")},
			push:   ev(4), max: 3, ok: true,
			want: "p3al e4",
		},
		{
			name:   "no presence to coalesce: refused",
			queued: []outMsg{ev(1), ev(2), pres(3, "al")},
			push:   ev(4), max: 3, ok: false,
			want: "e1 e2 p3al",
		},
		{
			name:   "distinct agents do not coalesce",
			queued: []outMsg{pres(1, "al"), pres(2, "bea")},
			push:   pres(3, "cy"), max: 2, ok: false,
			want: "p1al p2bea",
		},
		{
			name:   "replies and hello are never coalesced",
			queued: []outMsg{{b: []byte("r")}, pres(2, "al"), pres(3, "al")},
			push:   outMsg{b: []byte("r2")}, max: 3, ok: true,
			want: "r p3al r2",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var q sendQueue
			for _, m := range tt.queued {
				q.msgs = append(q.msgs, m)
			}
			if ok := q.push(tt.push, tt.max); ok != tt.ok {
				t.Errorf("push: got ok=%v, want %v", ok, tt.ok)
			}
			if got := qs(&q); got != tt.want {
				t.Errorf("queue: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSendQueueSeqsStayOrderedAfterCoalescing(t *testing.T) {
	var q sendQueue
	agents := []string{"al", "bea", "cy"}
	for i := range uint64(200) {
		m := ev(i + 1)
		if i%2 == 0 {
			m = pres(i+1, agents[i%3])
		}
		q.push(m, 8)
	}
	for i := 1; i < len(q.msgs); i++ {
		if q.msgs[i].seq <= q.msgs[i-1].seq {
			t.Fatalf("seq %d after %d: coalescing reordered the queue: %s", q.msgs[i].seq, q.msgs[i-1].seq, qs(&q))
		}
	}
}

func TestSendQueueDropThrough(t *testing.T) {
	var q sendQueue
	q.msgs = []outMsg{ev(3), {b: []byte("r")}, ev(5), {b: []byte("n6"), seq: 6, note: 9}, {b: []byte("n7"), seq: 7, note: 10}}
	q.dropThrough(4, map[uint64]bool{9: true})
	q.pushFront(outMsg{b: []byte("hello")})
	if got, want := qs(&q), "hello r e5 n7"; got != want {
		t.Errorf("queue: got %q, want %q", got, want)
	}
}

func TestSendQueuePlace(t *testing.T) {
	tests := []struct {
		name   string
		queued []outMsg
		floor  uint64
		want   string
	}{
		{"empty queue", nil, 10, "R"},
		{
			name:   "view-only events at or below the floor go, reply before the first newer event",
			queued: []outMsg{{b: []byte("r1")}, viewOnly(ev(9)), ev(10), viewOnly(ev(11)), ev(12)},
			floor:  10,
			want:   "r1 e10 R e11 e12",
		},
		{
			name:   "everything at or below the floor",
			queued: []outMsg{ev(5), viewOnly(ev(6))},
			floor:  10,
			want:   "e5 R",
		},
		{
			name:   "everything newer",
			queued: []outMsg{viewOnly(ev(11)), ev(12)},
			floor:  10,
			want:   "R e11 e12",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := sendQueue{msgs: tt.queued}
			q.place(outMsg{b: []byte("R")}, tt.floor)
			if got := qs(&q); got != tt.want {
				t.Errorf("queue: got %q, want %q", got, tt.want)
			}
		})
	}
}

func viewOnly(m outMsg) outMsg { m.viewOnly = true; return m }

func TestPack(t *testing.T) {
	msgs := func(sizes ...int) []outMsg {
		var out []outMsg
		for i, n := range sizes {
			out = append(out, outMsg{b: bytes.Repeat([]byte{byte('a' + i)}, n)})
		}
		return out
	}
	tests := []struct {
		name  string
		msgs  []outMsg
		limit int
		n     int
		size  int // payload bytes
	}{
		{"one message", msgs(10), 100, 1, 10},
		{"several fit", msgs(10, 10, 10), 100, 3, 32},
		{"exactly at the limit", msgs(10, 10, 10), 32, 3, 32},
		{"one byte over the limit", msgs(10, 10, 10), 31, 2, 21},
		{"a big first message goes alone", msgs(200, 10), 100, 1, 200},
		{"a big later message waits for the next frame", msgs(10, 200), 100, 1, 10},
		{"a payload with a 16-bit length", msgs(100, 100), 300, 2, 201},
		{"a payload with a 64-bit length", msgs(70000), 100, 1, 70000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			frame, n := pack(make([]byte, 0, 64), tt.msgs, tt.limit)
			payload := payloadOf(t, frame)
			if n != tt.n || len(payload) != tt.size {
				t.Fatalf("got %d messages in %d bytes, want %d in %d", n, len(payload), tt.n, tt.size)
			}
			lines := bytes.Split(payload, []byte("\n"))
			if len(lines) != n {
				t.Fatalf("frame splits into %d lines, want %d", len(lines), n)
			}
			for i, l := range lines {
				if !bytes.Equal(l, tt.msgs[i].b) {
					t.Errorf("line %d: got %q, want %q", i, l, tt.msgs[i].b)
				}
			}
		})
	}
	t.Run("a lone prepared event is not copied", func(t *testing.T) {
		frame, payload := frameOf([]byte("event"))
		got, _ := pack(nil, []outMsg{{b: payload, frame: frame}}, 100)
		if &got[0] != &frame[0] {
			t.Errorf("got a copy, want the event's own frame")
		}
	})
}

// payloadOf checks that frame is one final, unmasked text frame with the
// shortest length encoding (RFC 6455, section 5.2) and returns its payload.
func payloadOf(t *testing.T, frame []byte) []byte {
	t.Helper()
	if len(frame) < 2 || frame[0] != 0x81 || frame[1]&0x80 != 0 {
		t.Fatalf("frame starts % x, want a final unmasked text frame", frame[:min(2, len(frame))])
	}
	n, rest := uint64(frame[1]), frame[2:]
	switch n {
	case 126:
		n, rest = uint64(binary.BigEndian.Uint16(rest)), rest[2:]
		if n <= 125 {
			t.Fatalf("length %d in 16 bits, want 7", n)
		}
	case 127:
		n, rest = binary.BigEndian.Uint64(rest), rest[8:]
		if n <= 0xFFFF {
			t.Fatalf("length %d in 64 bits, want fewer", n)
		}
	}
	if uint64(len(rest)) != n {
		t.Fatalf("header says %d payload bytes, frame has %d", n, len(rest))
	}
	return rest
}

// BenchmarkFrameCoalesce packs a backlog of 64 typical event messages into
// frames, as a writer does for a connection that fell behind.
func BenchmarkFrameCoalesce(b *testing.B) {
	wire := []byte(`{"type":"event","seq":123456,"at":"2026-11-21T10:01:00Z","kind":"conversation","actor":{"id":"al","name":"Al","role":"agent"},"reason":"manual_assign","conv":{"id":"c7","channel":"email","customer":"Dana","queue":"new","owner":"bea","owner_since":"2026-11-21T10:01:00Z","version":6,"created_at":"2026-11-21T09:00:00Z","last_activity":"2026-11-21T10:01:00Z"},"prev":{"queue":"new","owner":""}}`)
	backlog := make([]outMsg, 64)
	for i := range backlog {
		frame, payload := frameOf(wire)
		backlog[i] = outMsg{b: payload, frame: frame, seq: uint64(i + 1)}
	}
	buf := make([]byte, 0, maxFrameHeader+maxPack)
	b.SetBytes(int64(len(backlog) * (len(wire) + 1)))
	b.ReportAllocs()
	for b.Loop() {
		for rest := backlog; len(rest) > 0; {
			frame, n := pack(buf, rest, maxPack)
			buf = frame[:0]
			rest = rest[n:]
		}
	}
}

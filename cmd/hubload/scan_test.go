package main

import (
	"errors"
	"strings"
	"testing"
)

func TestForEachLineSplitsBatchedFrames(t *testing.T) {
	frame := "{\"a\":1}\n{\"a\":2}\r\n\n  \n{\"a\":3}"
	var got []string
	err := forEachLine([]byte(frame), func(line []byte) error {
		got = append(got, string(line))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`{"a":1}`, `{"a":2}`, `{"a":3}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestForEachLineStopsOnError(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := forEachLine([]byte("1\n2\n3"), func([]byte) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("got n=%d err=%v, want 1 and stop", n, err)
	}
}

// A frame as the hub packs it: a conversation event whose strings hold the
// very keys the scanner looks for, a presence event, a settings event.
const batched = `{"type":"event","seq":43,"at":"2026-11-21T10:01:00Z","kind":"conversation","actor":{"id":"al","name":"Al \"version\":99 }","role":"agent"},"reason":"manual_assign","conv":{"channel":"email","customer":"Dana {\"id\":\"c9\",\"version\":7}\n","queue":"new","owner":"bea","owner_since":"2026-11-21T10:01:00Z","id":"c7","version":6,"created_at":"...","tags":[{"id":"x","version":1},[2,3]]},"prev":{"queue":"new","owner":""}}
{"type":"event","seq":44,"at":"...","kind":"presence","actor":{"role":"system"},"presence":{"agent":"bea","from":"online","to":"offline","reason":"grace_expired","last_seen":"..."},"agent_record":{"id":"bea","status":"offline"}}
{"type":"event","seq":45,"at":"...","kind":"settings","actor":{"id":"ann","name":"Ann","role":"admin"},"settings":{"offline_grace":2,"auto_ownership":{"email":true}}}`

func TestParseMessageBatchedEvents(t *testing.T) {
	var got []message
	err := forEachLine([]byte(batched), func(line []byte) error {
		var m message
		if err := parseMessage(line, &m); err != nil {
			return err
		}
		got = append(got, m)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d messages, want 3", len(got))
	}
	c := got[0]
	if !is(c.Type, "event") || c.Seq != 43 || !is(c.Kind, "conversation") || !is(c.ConvID, "c7") || c.Version != 6 || !is(c.Owner, "bea") {
		t.Errorf("conversation event: got type %s seq %d kind %s conv %s v%d owner %s, want event 43 conversation c7 v6 bea",
			c.Type, c.Seq, c.Kind, c.ConvID, c.Version, c.Owner)
	}
	p := got[1]
	if p.Seq != 44 || !is(p.Kind, "presence") || !is(p.Agent, "bea") || !is(p.From, "online") || !is(p.To, "offline") || !is(p.Reason, "grace_expired") {
		t.Errorf("presence event: got seq %d kind %s %s %s->%s (%s)", p.Seq, p.Kind, p.Agent, p.From, p.To, p.Reason)
	}
	if len(p.ConvID) != 0 || p.Version != 0 {
		t.Errorf("presence event: got conv %q v%d, want none (fields of the previous message must not leak)", p.ConvID, p.Version)
	}
	s := got[2]
	if s.Seq != 45 || !is(s.Kind, "settings") {
		t.Errorf("settings event: got seq %d kind %s", s.Seq, s.Kind)
	}
}

func TestParseMessageReplies(t *testing.T) {
	tests := []struct {
		line    string
		id      string
		ok      bool
		seq     uint64
		conv    string
		version uint64
		code    string
	}{
		{`{"type":"reply","id":7,"ok":true,"result":{"conv":"c7","seq":12}}`, "7", true, 12, "c7", 0, ""},
		{`{"type":"reply","id":"x-1","ok":true,"result":{"seq":13,"conv":{"id":"c8","version":4,"owner":""}}}`, `"x-1"`, true, 13, "c8", 4, ""},
		{`{"type":"reply","id":7,"ok":false,"error":{"code":"conflict","message":"conversation c7 changed: version 5 is current"}}`, "7", false, 0, "", 0, "conflict"},
		{`{ "ok" : true , "result" : { } , "type" : "reply" , "id" : 1 }`, "1", true, 0, "", 0, ""},
		{`{"type":"reply","id":2,"ok":true,"result":{"view":"load","seq":99,"items":[{"id":"c1","version":3}],"next":null,"counts":{"total":1}}}`, "2", true, 99, "", 0, ""},
	}
	for _, tt := range tests {
		var m message
		if err := parseMessage([]byte(tt.line), &m); err != nil {
			t.Errorf("%s: %v", tt.line, err)
			continue
		}
		if !is(m.Type, "reply") || string(m.ID) != tt.id || m.OK != tt.ok || m.Seq != tt.seq ||
			string(m.ConvID) != tt.conv || m.Version != tt.version || string(m.ErrCode) != tt.code {
			t.Errorf("%s:\ngot id %s ok %v seq %d conv %q v%d code %q\nwant id %s ok %v seq %d conv %q v%d code %q",
				tt.line, m.ID, m.OK, m.Seq, m.ConvID, m.Version, m.ErrCode, tt.id, tt.ok, tt.seq, tt.conv, tt.version, tt.code)
		}
	}
}

func TestParseMessageHello(t *testing.T) {
	hello := `{"type":"hello","v":1,"seq":42,"me":{"id":"bea","seq":1},"agents":[{"id":"al","status":"away","manual_away":true}],` +
		`"settings":{"offline_grace":60},"notifications":{"total":1,"items":[{"seq":40}]},"channels":["chat"],"limits":{"max_frame":65536},"resumed":false,"resync":false,"missed":[]}`
	var m message
	if err := parseMessage([]byte(hello), &m); err != nil {
		t.Fatal(err)
	}
	if !is(m.Type, "hello") || m.Seq != 42 {
		t.Fatalf("got type %s seq %d, want hello 42 (nested seqs must not count)", m.Type, m.Seq)
	}
}

func TestParseMessageRejectsMalformed(t *testing.T) {
	for _, line := range []string{
		``,
		`[1,2]`,
		`{"type":"event"`,
		`{"type":"event","seq":}`,
		`{"type":"event","seq":-1}`,
		`{"type":"event","seq":1.5}`,
		`{"type":"ev`,
		`{"type" "event"}`,
		`{"conv":{"id":"c1","version":"6"}}`,
		`{"a":{"b":[1,2}`,
		`{"seq":99999999999999999999999}`,
	} {
		var m message
		if err := parseMessage([]byte(line), &m); !errors.Is(err, errSyntax) {
			t.Errorf("%q: got %v, want a syntax error", line, err)
		}
	}
}

func TestConvIndex(t *testing.T) {
	for _, tt := range []struct {
		id string
		n  int
		ok bool
	}{{"c0", 0, true}, {"c123", 123, true}, {"c", 0, false}, {"x1", 0, false}, {"c1a", 0, false}, {"c12345678901", 0, false}} {
		n, ok := convIndex([]byte(tt.id))
		if n != tt.n || ok != tt.ok {
			t.Errorf("convIndex(%q) = %d, %v; want %d, %v", tt.id, n, ok, tt.n, tt.ok)
		}
	}
}

func BenchmarkParseBatchedFrame(b *testing.B) {
	frame := []byte(batched)
	var m message
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		forEachLine(frame, func(line []byte) error { return parseMessage(line, &m) })
	}
}

func TestParseMessageBackslashes(t *testing.T) {
	// A string ending in an escaped backslash ends at the next quote; an
	// escaped quote does not end it.
	line := `{"type":"event","actor":{"name":"back\\"},"customer":"say \\\"hi\\\"","seq":5,"kind":"conversation","conv":{"id":"c1","version":2}}`
	var m message
	if err := parseMessage([]byte(line), &m); err != nil {
		t.Fatal(err)
	}
	if m.Seq != 5 || !is(m.ConvID, "c1") || m.Version != 2 {
		t.Errorf("got seq %d conv %s v%d, want 5 c1 v2", m.Seq, m.ConvID, m.Version)
	}
}

// parseHead reads type and seq in either order and walks no further: what
// follows them is not even looked at.
func TestParseHeadStopsAtTypeAndSeq(t *testing.T) {
	for _, tc := range []struct {
		line    string
		typ     string
		seq     uint64
		wantErr bool
	}{
		{`{"type":"hello","v":1,"seq":42,"agents":[{"id":"a"}]}`, "hello", 42, false},
		{`{"seq":7,"me":{"name":"x\"y"},"type":"hello", not JSON from here`, "hello", 7, false},
		{`{"type":"hello","v":1}`, "hello", 0, false},
		{`{"type":"hello","seq":-1}`, "", 0, true},
		{`{"type":hello}`, "", 0, true},
		{`[1]`, "", 0, true},
	} {
		var m message
		err := parseHead([]byte(tc.line), &m)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err %v, want error %v", tc.line, err, tc.wantErr)
			continue
		}
		if err == nil && (string(m.Type) != tc.typ || m.Seq != tc.seq) {
			t.Errorf("%s: type %q seq %d, want %q %d", tc.line, m.Type, m.Seq, tc.typ, tc.seq)
		}
	}
}

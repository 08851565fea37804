package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestFanoutHandleMatchesStampsAndCountsDuplicates(t *testing.T) {
	e := &env{cfg: &config{scenario: "groups", w: 2}}
	s := &fanState{e: e, lat: newHist(), clients: make([]fanClient, 2)}
	for range 2 {
		s.convs = append(s.convs, []*convState{{id: "c0"}, {id: "c1"}})
	}
	// The driver stamps conversation c1 of workspace 1, version 5, at 10 ms.
	st := &s.convs[1][1].stamps[5%stampRing]
	st.k.Store(-1)
	st.at.Store(int64(10 * time.Millisecond))
	st.ver.Store(5)

	ev := func(seq uint64, conv string, version uint64) *message {
		return &message{Type: []byte("event"), Kind: []byte("conversation"), Seq: seq, ConvID: []byte(conv), Version: version}
	}
	// Client 1 is in workspace 1 (clients are dealt round-robin).
	s.handle(1, ev(3, "c1", 5), 25*time.Millisecond)
	s.handle(1, ev(3, "c1", 5), 30*time.Millisecond) // the same event again
	s.handle(1, ev(4, "c1", 6), 30*time.Millisecond) // a version never stamped
	s.handle(1, ev(5, "c9", 1), 30*time.Millisecond) // not the tool's conversation
	s.handle(1, &message{Type: []byte("event"), Kind: []byte("presence"), Seq: 6}, 30*time.Millisecond)
	s.handle(1, &message{Type: []byte("reply"), ID: []byte("1")}, 30*time.Millisecond)
	// Client 0 is in workspace 0, where nothing was stamped.
	s.handle(0, ev(3, "c1", 5), 30*time.Millisecond)

	if got := s.delivered.Load(); got != 1 {
		t.Errorf("delivered: got %d, want 1", got)
	}
	if got := s.duplicates.Load(); got != 1 {
		t.Errorf("duplicates: got %d, want 1", got)
	}
	if got := s.unmatched.Load(); got != 3 {
		t.Errorf("unmatched: got %d, want 3", got)
	}
	if got := s.lat.quantiles(1)[0]; got != 15*time.Millisecond {
		t.Errorf("latency: got %v, want 15ms", got)
	}
}

func TestReportKeepsFieldOrder(t *testing.T) {
	r := &report{Scenario: "fanout"}
	r.Params.add("n", 10)
	r.Params.add("agents", 2)
	r.Results.add("z_first", 1.5)
	r.Results.add("a_second", summary{N: 1, P50: 1})
	r.problem("%d lost", 3)
	var b bytes.Buffer
	if err := r.write(&b, true); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(b.String())
	if !strings.HasPrefix(line, `{"scenario":"fanout","params":{"n":10,"agents":2},"results":{"z_first":1.5,"a_second":{`) {
		t.Errorf("got %s", line)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(line), &back); err != nil {
		t.Fatalf("not one JSON object: %v", err)
	}
	if p := back["problems"].([]any); len(p) != 1 || p[0] != "3 lost" {
		t.Errorf("problems: got %v, want [3 lost]", p)
	}
}

package main

import (
	"testing"
	"time"
)

func TestCheckChurn(t *testing.T) {
	s := time.Second
	grace := 2 * s
	// up 0-10, inside gap (back at 10.5), up 10.5-20, outside gap (dial at
	// 24), up 24.1-30 final.
	timeline := []cycle{
		{dialed: 0, connected: s / 10, closed: 10 * s},
		{dialed: 10*s + s/3, connected: 10*s + s/2, closed: 20 * s},
		{dialed: 24 * s, connected: 24*s + s/10, closed: 30 * s, final: true},
	}
	tr := func(to string, at time.Duration) transition { return transition{to: to, at: at} }
	tests := []struct {
		name                     string
		got                      []transition
		lost, wrong, wrongAgents int
	}{
		{"right", []transition{tr("online", s/5), tr("offline", 22*s), tr("online", 24*s+s/5), tr("offline", 32*s)}, 0, 0, 0},
		{"offline inside the grace", []transition{tr("online", s/5), tr("offline", 12*s), tr("online", 13*s), tr("offline", 22*s), tr("online", 24*s+s/5), tr("offline", 32*s)}, 0, 2, 1},
		{"lost final offline", []transition{tr("online", s/5), tr("offline", 22*s), tr("online", 24*s+s/5)}, 1, 0, 1},
		{"wrong order", []transition{tr("online", s/5), tr("offline", 22*s), tr("offline", 24*s+s/5), tr("online", 32*s)}, 0, 1, 1},
	}
	for _, tt := range tests {
		a := &tab{id: "t0", cycles: timeline}
		obs := &observer{byAgent: map[string][]transition{"t0": tt.got}}
		r := checkChurn([]*tab{a}, obs, grace, 0)
		if r.lost != tt.lost || r.wrong != tt.wrong || r.mismatched != tt.wrongAgents {
			t.Errorf("%s: got lost %d wrong %d agents %d, want %d %d %d (%v)", tt.name, r.lost, r.wrong, r.mismatched, tt.lost, tt.wrong, tt.wrongAgents, r.samples)
		}
		if r.inside != 1 || r.outside != 1 || r.closes != 2 || r.expected != 4 && tt.wrongAgents == 0 {
			t.Errorf("%s: got inside %d outside %d closes %d expected %d, want 1 1 2 4", tt.name, r.inside, r.outside, r.closes, r.expected)
		}
	}
}

func TestClassifyGaps(t *testing.T) {
	s := time.Second
	grace := 2 * s
	mk := func(dialed, connected time.Duration) []cycle {
		return []cycle{{closed: 10 * s}, {dialed: 10*s + dialed, connected: 10*s + connected, closed: 20 * s, final: true}}
	}
	for _, tt := range []struct {
		dialed, connected time.Duration
		want              gapKind
	}{
		{s / 2, s, gapInside},
		{s / 2, 3 * s, gapAmbiguous}, // meant to be inside, the connect took 2.5 s
		{3 * s, 3*s + s/10, gapAmbiguous},
		{3*s + s/10, 3*s + s/5, gapOutside},
	} {
		if got := classify(mk(tt.dialed, tt.connected), 0, grace); got != tt.want {
			t.Errorf("dial +%v, hello +%v: got %v, want %v", tt.dialed, tt.connected, got, tt.want)
		}
	}
	if got := classify(mk(0, 0), 1, grace); got != gapFinal {
		t.Errorf("last cycle: got %v, want final", got)
	}
}

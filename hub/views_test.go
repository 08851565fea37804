package hub

import (
	"testing"

	"github.com/presencehub/presencehub/queues"
)

func TestViewMatches(t *testing.T) {
	st := func(q queues.Queue, owner string) queues.ConvState { return queues.ConvState{Queue: q, Owner: owner} }
	f := func(kind queues.FilterKind, agents ...string) queues.Filter {
		return queues.Filter{Kind: kind, Agents: agents, Me: "bea"}
	}
	tests := []struct {
		filter queues.Filter
		state  queues.ConvState
		want   bool
	}{
		{f(queues.FilterAll), st(queues.QueueNew, ""), true},
		{f(queues.FilterAll), st(queues.QueueNew, "al"), true},
		{f(queues.FilterAll), st(queues.QueuePending, "al"), false},
		{f(queues.FilterUnowned), st(queues.QueueNew, ""), true},
		{f(queues.FilterUnowned), st(queues.QueueNew, "bea"), false},
		{f(queues.FilterMine), st(queues.QueueNew, "bea"), true},
		{f(queues.FilterMine), st(queues.QueueNew, "al"), false},
		{f(queues.FilterMine), st(queues.QueueNew, ""), false},
		{f(queues.FilterOthers), st(queues.QueueNew, "al"), true},
		{f(queues.FilterOthers), st(queues.QueueNew, "bea"), false},
		{f(queues.FilterOthers), st(queues.QueueNew, ""), false},
		{f(queues.FilterAgents, "al", "cy"), st(queues.QueueNew, "cy"), true},
		{f(queues.FilterAgents, "al", "cy"), st(queues.QueueNew, "bea"), false},
		{f(queues.FilterAgents, "al", "cy"), st(queues.QueueNew, ""), false},
		{f(queues.FilterAgents, "al"), st(queues.QueueResolved, "al"), false},
	}
	for _, tt := range tests {
		v := view{queue: queues.QueueNew, filter: tt.filter}
		if got := v.matches(tt.state); got != tt.want {
			t.Errorf("%s%v on %s/%q: got %v, want %v", tt.filter.Kind, tt.filter.Agents, tt.state.Queue, tt.state.Owner, got, tt.want)
		}
	}
}

func TestViewWants(t *testing.T) {
	v := view{queue: queues.QueueNew, filter: queues.Filter{Kind: queues.FilterMine, Me: "bea"}, floor: 10}
	conv := func(seq uint64, prev *queues.ConvState, q queues.Queue, owner string) *queues.Event {
		return &queues.Event{Seq: seq, Kind: queues.EventConversation, Prev: prev,
			Conv: &queues.Conversation{ID: "c1", Queue: q, Owner: owner}}
	}
	tests := []struct {
		name string
		ev   *queues.Event
		want bool
	}{
		{"entered", conv(11, &queues.ConvState{Queue: queues.QueueNew}, queues.QueueNew, "bea"), true},
		{"left", conv(11, &queues.ConvState{Queue: queues.QueueNew, Owner: "bea"}, queues.QueuePending, "bea"), true},
		{"changed elsewhere", conv(11, &queues.ConvState{Queue: queues.QueuePending, Owner: "bea"}, queues.QueuePending, ""), false},
		{"created in view", conv(11, nil, queues.QueueNew, "bea"), true},
		{"created elsewhere", conv(11, nil, queues.QueueNew, ""), false},
		{"at the floor", conv(10, nil, queues.QueueNew, "bea"), false},
	}
	for _, tt := range tests {
		if got := v.wants(tt.ev); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestCheckFilter(t *testing.T) {
	tests := []struct {
		in     *queues.Filter
		kind   queues.FilterKind
		agents int
		bad    bool
	}{
		{nil, queues.FilterAll, 0, false},
		{&queues.Filter{}, queues.FilterAll, 0, false},
		{&queues.Filter{Kind: queues.FilterMine}, queues.FilterMine, 0, false},
		{&queues.Filter{Kind: queues.FilterAgents, Agents: []string{"al", "al", "cy"}}, queues.FilterAgents, 2, false},
		{&queues.Filter{Kind: queues.FilterAgents}, "", 0, true},
		{&queues.Filter{Kind: queues.FilterAgents, Agents: []string{"a/b"}}, "", 0, true},
		{&queues.Filter{Kind: "everyone"}, "", 0, true},
	}
	for _, tt := range tests {
		got, err := checkFilter(tt.in, "bea")
		if tt.bad {
			if err == nil {
				t.Errorf("%+v: got no error, want invalid", tt.in)
			}
			continue
		}
		if err != nil || got.Kind != tt.kind || len(got.Agents) != tt.agents || got.Me != "bea" {
			t.Errorf("%+v: got %+v, %v; want kind %s with %d agents and Me bea", tt.in, got, err, tt.kind, tt.agents)
		}
	}
}

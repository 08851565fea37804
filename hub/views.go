package hub

import (
	"slices"

	"github.com/presencehub/presencehub/queues"
)

// A view is one subscribed, filtered list of a queue on one connection.
// Conversation events reach a connection only through its views: an event
// is delivered when the conversation before (Prev) or after (Conv) the
// change matches one of them, which is exactly the test a client applies
// to tell whether the conversation entered, left or changed in the view
// (docs/protocol.md, Events).
//
// A view's fields are guarded by its connection's mu: the reader goroutine
// changes them, Publish reads them.
type view struct {
	id     string
	queue  queues.Queue
	filter queues.Filter // Me is the connection's agent
	// floor is the sequence number the view's subscribe reply reflects:
	// events at or below it are already in the page (or in the reply's
	// events) and must not reach the client again for this view.
	floor uint64
	// pending is set from the moment the view is registered until its
	// subscribe reply is queued; see conn.subscribe.
	pending bool
}

// Limits on views, so a client cannot make every broadcast expensive.
const (
	maxViews        = 16
	maxViewIDLen    = 64
	maxFilterAgents = 50
)

// matches reports whether a conversation in state s belongs to the view.
// It must agree with the store's List filters (queues/index.go).
func (v *view) matches(s queues.ConvState) bool {
	if s.Queue != v.queue {
		return false
	}
	switch v.filter.Kind {
	case queues.FilterUnowned:
		return s.Owner == ""
	case queues.FilterMine:
		return s.Owner != "" && s.Owner == v.filter.Me
	case queues.FilterOthers:
		return s.Owner != "" && s.Owner != v.filter.Me
	case queues.FilterAgents:
		return s.Owner != "" && slices.Contains(v.filter.Agents, s.Owner)
	default:
		return true
	}
}

// wants reports whether a conversation event concerns the view: newer than
// the view's floor, and matching before or after the change.
func (v *view) wants(ev *queues.Event) bool {
	if ev.Seq <= v.floor {
		return false
	}
	if ev.Prev != nil && v.matches(*ev.Prev) {
		return true
	}
	return ev.Conv != nil && v.matches(queues.ConvState{Queue: ev.Conv.Queue, Owner: ev.Conv.Owner})
}

// checkFilter validates a filter from a request and returns it with Me set.
// A missing filter is "all".
func checkFilter(f *queues.Filter, me string) (queues.Filter, error) {
	if f == nil {
		return queues.Filter{Kind: queues.FilterAll, Me: me}, nil
	}
	out := queues.Filter{Kind: f.Kind, Me: me}
	switch f.Kind {
	case "":
		out.Kind = queues.FilterAll
	case queues.FilterAll, queues.FilterUnowned, queues.FilterMine, queues.FilterOthers:
	case queues.FilterAgents:
		if len(f.Agents) == 0 {
			return out, invalidField("filter", "agents needs at least one agent")
		}
		if len(f.Agents) > maxFilterAgents {
			return out, invalidField("filter", "at most %d agents", maxFilterAgents)
		}
		for _, a := range f.Agents {
			if err := ValidID("filter.agents", a); err != nil {
				return out, invalidField("filter", "%v", err)
			}
			if !slices.Contains(out.Agents, a) {
				out.Agents = append(out.Agents, a)
			}
		}
	default:
		return out, invalidField("filter", "kind must be all, unowned, mine, others or agents")
	}
	return out, nil
}

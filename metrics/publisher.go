package metrics

import (
	"time"

	"github.com/presencehub/presencehub/queues"
)

// maxRemembered bounds Metrics.offlineSince. Entries are dropped when the
// agent comes back; agents who stay offline for good would otherwise pile
// up, so past the bound the oldest-looking ones (by age) are pruned.
const maxRemembered = 100_000

// rememberFor is how long an offline agent's LastSeen is kept once the map
// is full. A removal later than this is far past every bucket anyway.
const rememberFor = time.Hour

type agentKey struct{ workspace, agent string }

// Publisher returns a queues.Publisher that counts what passes through it
// and then hands the same events, unchanged, to next (which may be nil, for
// counting only). It counts:
//
//   - presencehub_ownership_changes_total: every conversation event whose
//     owner changed (prev owner != new owner), by the event's reason;
//   - presencehub_presence_transitions_total: every presence event, by new
//     status and reason;
//   - presencehub_ownership_removal_delay_seconds: for every conversation
//     unowned with reason logout, the time from the LastSeen of that
//     agent's offline transition to the event.
//
// Counting takes no I/O and no lock shared with the hub, so the wrapper
// keeps Publish's must-not-block contract.
func (m *Metrics) Publisher(next queues.Publisher) queues.Publisher {
	return &publisher{m: m, next: next}
}

type publisher struct {
	m    *Metrics
	next queues.Publisher
}

func (p *publisher) Publish(workspace string, events []queues.Event) {
	p.m.observe(workspace, events)
	if p.next != nil {
		p.next.Publish(workspace, events)
	}
}

// observe counts one batch. Events are walked in order: the store commits
// an agent's offline transition before the removals it causes, so the
// presence event has been remembered by the time its removals are seen.
func (m *Metrics) observe(workspace string, events []queues.Event) {
	for i := range events {
		ev := &events[i]
		switch ev.Kind {
		case queues.EventPresence:
			if ev.Presence != nil {
				m.presence(workspace, ev.Presence)
			}
		case queues.EventConversation:
			if ev.Conv != nil {
				m.conversation(workspace, ev)
			}
		}
	}
}

func (m *Metrics) presence(workspace string, pc *queues.PresenceChange) {
	m.transitions[[2]string{m.transitionTo.label(string(pc.To)), m.transitionWhy.label(pc.Reason)}].Inc()

	key := agentKey{workspace, pc.Agent}
	m.mu.Lock()
	defer m.mu.Unlock()
	if pc.To != queues.StatusOffline {
		delete(m.offlineSince, key)
		return
	}
	if pc.LastSeen.IsZero() {
		// Without LastSeen there is nothing to measure from; forget any
		// older value rather than measure from a previous absence.
		delete(m.offlineSince, key)
		return
	}
	if len(m.offlineSince) >= maxRemembered {
		m.pruneLocked(pc.LastSeen)
	}
	m.offlineSince[key] = pc.LastSeen
}

// pruneLocked drops entries older than rememberFor before now; if that
// frees nothing, it drops everything, which only costs the delay of
// removals still to come for those agents.
func (m *Metrics) pruneLocked(now time.Time) {
	for k, t := range m.offlineSince {
		if now.Sub(t) > rememberFor {
			delete(m.offlineSince, k)
		}
	}
	if len(m.offlineSince) >= maxRemembered {
		clear(m.offlineSince)
	}
}

func (m *Metrics) conversation(workspace string, ev *queues.Event) {
	var prevOwner string
	if ev.Prev != nil {
		prevOwner = ev.Prev.Owner
	}
	if prevOwner == ev.Conv.Owner {
		return
	}
	m.ownershipChanges.inc(string(ev.Reason))
	if ev.Reason != queues.ReasonLogout || ev.Conv.Owner != "" || prevOwner == "" {
		return
	}
	m.mu.Lock()
	lastSeen, ok := m.offlineSince[agentKey{workspace, prevOwner}]
	m.mu.Unlock()
	if !ok {
		return
	}
	// A clock step backwards could make this negative; zero is the honest
	// floor for "removed at once".
	m.removalDelay.Observe(max(ev.At.Sub(lastSeen), 0).Seconds())
}

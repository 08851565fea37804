package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/presence"
	"github.com/presencehub/presencehub/queues"
)

// presenceSink commits the tracker's updates to the store, in the order the
// tracker made them. The tracker calls push from its own goroutine, which must
// never wait on I/O, so push only appends to a queue; run does the writes.
//
// The queue is not bounded: dropping a presence update would lose a
// transition (and with it a Remove Ownership sweep), and its length is at
// most the number of presence changes in flight, which the store drains at
// thousands per second.
type presenceSink struct {
	store  *queues.Store
	closer agentCloser
	log    *slog.Logger

	mu      sync.Mutex        // guards pending
	pending []presence.Update // committed in order by run
	wake    chan struct{}     // capacity 1: "pending is not empty"
}

// agentCloser closes an agent's sockets; the hub does it.
type agentCloser interface {
	CloseAgent(ws, agent string, code websocket.StatusCode, reason string)
}

func newPresenceSink(store *queues.Store, closer agentCloser, log *slog.Logger) *presenceSink {
	return &presenceSink{store: store, closer: closer, log: log, wake: make(chan struct{}, 1)}
}

func (p *presenceSink) push(u presence.Update) {
	p.mu.Lock()
	p.pending = append(p.pending, u)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// run commits updates until ctx is done, then commits what is still queued
// with a short bound, so a shutdown does not drop the last transitions.
func (p *presenceSink) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			drain, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			p.flush(drain)
			cancel()
			return
		case <-p.wake:
			p.flush(ctx)
		}
	}
}

func (p *presenceSink) flush(ctx context.Context) {
	for {
		p.mu.Lock()
		batch := p.pending
		p.pending = nil
		p.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		for _, u := range batch {
			p.commit(ctx, u)
		}
	}
}

// commit writes one update, retrying a store that is briefly unable to take
// writes: a presence transition must not be lost to a transient error.
func (p *presenceSink) commit(ctx context.Context, u presence.Update) {
	pu := queues.PresenceUpdate{
		Agent:         u.Agent,
		Status:        queues.Status(u.Status),
		Reason:        string(u.Reason),
		ManualAway:    u.ManualAway,
		GraceDeadline: u.GraceDeadline,
		LastSeen:      u.LastSeen,
	}
	for attempt := 0; ; attempt++ {
		_, err := p.store.ApplyPresence(ctx, u.Workspace, pu)
		if err == nil {
			break
		}
		if !errors.Is(err, queues.ErrUnavailable) || attempt >= 5 || ctx.Err() != nil {
			p.log.Error("presence update not committed", "ws", u.Workspace, "agent", u.Agent,
				"status", u.Status, "reason", u.Reason, "err", err)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
		}
	}
	// Idle logout is decided by the tracker; the hub closes the sockets
	// (explicit logout and force-offline close them in the hub already).
	if u.Transition() && u.Status == presence.Offline && u.Reason == presence.ReasonIdleLogout {
		p.closer.CloseAgent(u.Workspace, u.Agent, hub.CloseLoggedOut, "idle logout")
	}
}

// settingsTee tells the tracker about settings changes before passing every
// event on, so a new offline grace or idle timeout applies at once.
type settingsTee struct {
	tracker *presence.Tracker
	next    queues.Publisher
}

func (t settingsTee) Publish(ws string, events []queues.Event) {
	for _, ev := range events {
		if ev.Kind == queues.EventSettings && ev.Settings != nil {
			t.tracker.Configure(ws, timing(*ev.Settings))
		}
	}
	t.next.Publish(ws, events)
}

func timing(s queues.Settings) presence.Timing {
	return presence.Timing{
		Grace:      time.Duration(s.OfflineGrace) * time.Second,
		IdleAway:   time.Duration(s.IdleAway) * time.Second,
		IdleLogout: time.Duration(s.IdleLogout) * time.Second,
	}
}

// restorePresence hands the tracker what the store knew before a restart:
// every workspace's timing, and every agent who was online or away. Those
// agents have no connection now, so each gets a grace: the one that was
// running (a stored deadline), or a full grace counted from start-up.
func restorePresence(store *queues.Store, tracker *presence.Tracker, now time.Time) (restored int, err error) {
	for _, ws := range store.Workspaces() {
		s, err := store.Settings(ws)
		if err != nil {
			return restored, err
		}
		t := timing(s)
		tracker.Configure(ws, t)
		agents, err := store.Agents(ws)
		if err != nil {
			return restored, err
		}
		for _, a := range agents {
			if a.Status == queues.StatusOffline {
				continue
			}
			deadline := a.GraceDeadline
			if deadline.IsZero() {
				deadline = now.Add(t.Grace)
			}
			tracker.Restore(ws, a.ID, presence.Status(a.Status), a.ManualAway, deadline)
			restored++
		}
	}
	return restored, nil
}

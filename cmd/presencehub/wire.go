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

// presenceSink commits the tracker's updates to the store. The tracker calls
// push from its own goroutine, which must never wait on I/O, so push only
// queues; a pool of workers does the writes.
//
// Each agent's updates are committed one after another, in the order the
// tracker made them (a transition must not overtake the one before it).
// Different agents' updates are committed concurrently, so the store's
// committer puts them in the same batch: a burst of logins costs a few
// fsyncs, not one each. A backlog here would also let the store's safety
// net for lost grace timers act on a deadline whose reconnect is still
// queued, so keeping up matters for correctness, not only speed.
//
// The queue is not bounded: dropping a presence update would lose a
// transition (and with it a Remove Ownership sweep), and its length is at
// most the presence changes in flight.
type presenceSink struct {
	store  *queues.Store
	closer agentCloser
	log    *slog.Logger

	mu       sync.Mutex
	cond     *sync.Cond                         // signalled when ready grows or stopping is set; uses mu
	pending  map[presence.Key][]presence.Update // guarded by mu: updates not yet taken by a worker
	ready    []presence.Key                     // guarded by mu: agents with pending updates and no worker, oldest first
	busy     map[presence.Key]bool              // guarded by mu: agents a worker is committing for
	stopping bool                               // guarded by mu: drain what is queued, then stop
}

// sinkWorkers bounds the commits in flight; the committer batches them.
const sinkWorkers = 64

// agentCloser closes an agent's sockets; the hub does it.
type agentCloser interface {
	CloseAgent(ws, agent string, code websocket.StatusCode, reason string)
}

func newPresenceSink(store *queues.Store, closer agentCloser, log *slog.Logger) *presenceSink {
	p := &presenceSink{
		store: store, closer: closer, log: log,
		pending: make(map[presence.Key][]presence.Update),
		busy:    make(map[presence.Key]bool),
	}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *presenceSink) push(u presence.Update) {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.pending[u.Key]
	if len(q) == 0 && !p.busy[u.Key] {
		p.ready = append(p.ready, u.Key)
	}
	p.pending[u.Key] = append(q, u)
	p.cond.Signal()
}

// run commits updates until ctx is done, then commits what is still queued
// within a short bound, so a shutdown does not drop the last transitions.
func (p *presenceSink) run(ctx context.Context) {
	// Commits outlive ctx so the final drain can finish; the drain itself
	// is bounded below.
	drain, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	var wg sync.WaitGroup
	for range sinkWorkers {
		wg.Go(func() { p.work(drain) }) // ends when stopping and nothing is ready
	}
	<-ctx.Done()
	p.mu.Lock()
	p.stopping = true
	p.cond.Broadcast()
	p.mu.Unlock()
	bound := time.AfterFunc(5*time.Second, cancelDrain)
	defer bound.Stop()
	wg.Wait()
}

// work takes one agent's queued updates at a time and commits them in order.
func (p *presenceSink) work(ctx context.Context) {
	for {
		p.mu.Lock()
		for len(p.ready) == 0 && !p.stopping {
			p.cond.Wait()
		}
		if len(p.ready) == 0 {
			p.mu.Unlock()
			return
		}
		key := p.ready[0]
		p.ready = p.ready[1:]
		batch := p.pending[key]
		delete(p.pending, key)
		p.busy[key] = true
		p.mu.Unlock()

		for _, u := range batch {
			p.commit(ctx, u)
		}

		p.mu.Lock()
		delete(p.busy, key)
		if len(p.pending[key]) > 0 {
			p.ready = append(p.ready, key)
			p.cond.Signal()
		}
		p.mu.Unlock()
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

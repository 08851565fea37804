package queues

import (
	"container/heap"
	"context"
	"maps"
	"math"
	"slices"
	"time"
)

// Durable timers: boomerangs and offline-grace deadlines. Each is stored in
// its record (Conversation.Boomerang, Agent.GraceDeadline) and in the timer
// index t/<deadline>/..., written in the same transaction, and kept in
// memory in a min-heap owned by the committer. Run sleeps on a precise
// time.Timer until the earliest one is due and then asks the committer to
// fire what is due. Heap entries are never removed when a timer is replaced
// or cancelled; firing checks the entry against the record and skips a stale
// one, which is cheaper than keeping heap positions.

type timerEntry struct {
	due      time.Time // when to fire
	deadline time.Time // the stored deadline it was armed for
	ws       string
	kind     byte
	id       string
}

// timerHeap is a min-heap of timerEntry by due time.
type timerHeap []timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timerEntry)) }
func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}
func (h *timerHeap) push(e timerEntry) { heap.Push(h, e) }

// graceEntry: a grace deadline fires GraceSlack after the deadline. The
// presence tracker makes the agent offline at the deadline itself; the store
// steps in only when that did not happen (the tracker's timer was lost in a
// crash), so the two never race to write the same transition.
func (s *Store) graceEntry(ws, agent string, deadline time.Time) timerEntry {
	return timerEntry{due: deadline.Add(s.opts.GraceSlack), deadline: deadline, ws: ws, kind: timerGrace, id: agent}
}

// publishNextDue tells Run when the earliest timer is due. Committer only.
func (s *Store) publishNextDue() {
	next := int64(math.MaxInt64)
	if len(s.timers) > 0 {
		next = s.timers[0].due.UnixNano()
	}
	if prev := s.nextDue.Swap(next); next < prev {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// maxTimerSleep bounds Run's sleep so a clock that jumps (NTP, or a test's
// Options.Now) is noticed within a second.
const maxTimerSleep = time.Second

// Run fires durable timers when due and reconciles every ReconcileEvery,
// until ctx is done (it then returns nil) or the store is closed
// (ErrUnavailable). Run it once.
func (s *Store) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	reconcile := time.NewTicker(s.opts.ReconcileEvery)
	defer reconcile.Stop()
	for {
		wait := maxTimerSleep
		if next := s.nextDue.Load(); next != math.MaxInt64 {
			wait = min(time.Unix(0, next).Sub(s.now()), maxTimerSleep)
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return nil
		case <-s.quit:
			return errClosed
		case <-s.wake:
		case <-timer.C:
			if next := s.nextDue.Load(); next != math.MaxInt64 && next <= s.now().UnixNano() {
				if _, err := do(s, ctx, func(b *batch) (int, error) { return b.fireDue(), nil }); err != nil {
					s.log.Warn("firing timers", "err", err)
				}
			}
		case <-reconcile.C:
			only := s.reconcileCandidates()
			if only == nil {
				break
			}
			if _, err := do(s, ctx, func(b *batch) (int, error) { return b.reconcile(only), nil }); err != nil {
				s.log.Warn("reconciliation", "err", err)
			}
		}
	}
}

// fireDue fires every timer due by now and returns how many changed
// something. Popped entries go back on the heap if the commit fails.
func (b *batch) fireDue() int {
	s := b.s
	now := s.now()
	var due []timerEntry
	for len(s.timers) > 0 && !s.timers[0].due.After(now) {
		due = append(due, heap.Pop(&s.timers).(timerEntry))
	}
	if len(due) == 0 {
		return 0
	}
	b.onFail = append(b.onFail, func() {
		for _, e := range due {
			s.timers.push(e)
		}
		s.publishNextDue()
	})
	fired := 0
	for _, e := range due {
		t, err := b.ws(e.ws, false)
		if err != nil {
			continue
		}
		switch e.kind {
		case timerBoomerang:
			c := t.conv(e.id)
			if c == nil {
				continue
			}
			if r := t.apply(c, ruleBoomerangFires(c, e.deadline, t.env())); r.Changed {
				fired++
			}
		case timerGrace:
			a, ok := t.agent(e.id)
			if ok && a.GraceDeadline.Equal(e.deadline) && a.Status != StatusOffline {
				if t.forceOffline(a, now) {
					fired++
				}
			}
		}
	}
	s.publishNextDue()
	return fired
}

// forceOffline makes an agent whose grace ran out offline, as the presence
// tracker would have: reason grace_expired, last seen when the grace began.
func (t *wsTx) forceOffline(a *Agent, now time.Time) bool {
	grace := time.Duration(t.rec.Settings.OfflineGrace) * time.Second
	_, changed, err := t.presence(PresenceUpdate{
		Agent: a.ID, Status: StatusOffline, Reason: "grace_expired",
		ManualAway: a.ManualAway, LastSeen: a.GraceDeadline.Add(-grace),
	})
	if err != nil {
		t.b.s.log.Warn("forcing offline", "workspace", t.name, "agent", a.ID, "err", err)
	}
	return changed
}

// reconcile is the safety net behind the presence tracker and the sweeps,
// and is idempotent: (a) agents whose stored grace deadline passed more than
// GraceSlack ago and who are still not offline are made offline; (b) offline
// agents who went offline while Remove Ownership was on and still own new
// conversations they owned then lose them (reason logout).
//
// With only nil it checks every agent. Run passes what reconcileCandidates
// found instead: the pass over every agent then happens outside the
// committer, under read locks, and the committer, which every change waits
// behind, only rechecks the few agents it named (usually none, and then Run
// does not ask it at all). A candidate is rechecked here against the
// batch's state, so one that changed since the scan is left alone.
func (b *batch) reconcile(only map[string][]string) int {
	s := b.s
	now := s.now()
	var names []string
	if only == nil {
		names = make([]string, 0, len(s.wss))
		for name := range s.wss {
			names = append(names, name)
		}
	} else {
		names = slices.Collect(maps.Keys(only))
	}
	slices.Sort(names)
	n := 0
	for _, name := range names {
		t, err := b.ws(name, false)
		if err != nil {
			continue
		}
		ids := only[name]
		if only == nil {
			ids = t.agentIDs()
		}
		slices.Sort(ids)
		for _, id := range ids {
			a, ok := t.agent(id)
			if !ok {
				continue
			}
			if graceOverdue(a, now, s.opts.GraceSlack) {
				if t.forceOffline(a, now) {
					n++
				}
				continue
			}
			if !sweepDue(a, &t.rec.Settings) {
				continue
			}
			env := t.env()
			for _, c := range t.ownedNew(id) {
				if sweptByReconcile(c, a) {
					t.apply(c, ruleUnown(c, System, ReasonLogout, env))
					n++
				}
			}
		}
	}
	return n
}

// graceOverdue: a's stored grace ran out more than slack ago, and a is still
// not offline (the presence timer that should have ended it was lost).
func graceOverdue(a *Agent, now time.Time, slack time.Duration) bool {
	return !a.GraceDeadline.IsZero() && a.Status != StatusOffline && now.Sub(a.GraceDeadline) > slack
}

// sweepDue: a went offline while Remove Ownership was on, so the new
// conversations a owned then are reconcile's to unown.
func sweepDue(a *Agent, set *Settings) bool {
	return a.Status == StatusOffline && set.RemoveOwnership && !a.OfflineSince.Before(set.RemoveOwnershipSince)
}

// reconcileCandidates finds, in the installed state, the agents reconcile
// would act on, per workspace; nil when there are none. It never holds the
// committer, and holds each workspace's read lock only while it scans that
// workspace: installing a commit to it waits at most that long (about 30 ns
// an agent), and no other commit waits at all.
func (s *Store) reconcileCandidates() map[string][]string {
	now := s.now()
	s.mu.RLock()
	wss := slices.Collect(maps.Values(s.wss))
	s.mu.RUnlock()
	var out map[string][]string
	for _, w := range wss {
		w.mu.RLock()
		for id, a := range w.agents {
			if !graceOverdue(a, now, s.opts.GraceSlack) && !(sweepDue(a, &w.rec.Settings) && w.ownsSweepable(a)) {
				continue
			}
			if out == nil {
				out = map[string][]string{}
			}
			out[w.name] = append(out[w.name], id)
		}
		w.mu.RUnlock()
	}
	return out
}

// ownsSweepable reports whether a still owns a new conversation that
// reconcile would unown. Called with w.mu held.
func (w *workspace) ownsSweepable(a *Agent) bool {
	found := false
	w.queues[0].byOwner[a.ID].walk(nil, func(e ientry) bool {
		if c := w.convs[e.id]; c != nil && sweptByReconcile(c, a) {
			found = true
			return false
		}
		return true
	})
	return found
}

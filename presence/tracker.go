package presence

import (
	"container/heap"
	"context"
	"errors"
	"maps"
	"slices"
	"sync/atomic"
	"time"
)

// inputBuffer is how many inputs wait for the tracker goroutine before
// callers block. A burst of a thousand connects (a hub restart with every
// client reconnecting) is taken without waiting.
const inputBuffer = 1024

// ErrStarted is returned by a second call to Run: one goroutine owns the
// states, so there can be only one.
var ErrStarted = errors.New("presence: Tracker.Run called more than once")

// Tracker owns every agent's presence state and timers on one goroutine,
// Run, and applies Next to them. Its input methods are safe from any
// goroutine; see the package documentation for what they promise.
type Tracker struct {
	onUpdate func(Update)
	def      Timing
	in       chan request
	done     chan struct{} // closed when Run returns
	started  atomic.Bool

	// Owned by the Run goroutine; nothing else touches them.
	workspaces map[string]*workspace
	timers     timerHeap
	fx         []Effect // scratch for next, reused across inputs
}

type op uint8

const (
	opInput op = iota + 1
	opConfigure
	opSnapshot
)

// request is one message to the Run goroutine. It is a value, not a
// closure, so sending an input allocates nothing.
type request struct {
	op     op
	in     Input
	timing Timing        // opConfigure
	reply  chan snapshot // opSnapshot, buffered 1
}

type snapshot struct {
	state State
	known bool
}

type workspace struct {
	timing Timing
	agents map[string]*agent
}

type agent struct {
	key    Key
	state  State
	timers [2]timerEntry // indexed by Timer-1
}

// NewTracker returns a tracker that reports every Update to onUpdate and
// uses def for workspaces that were never configured. onUpdate is called
// from the tracker goroutine: it must not block, and must not call the
// Tracker (a Snapshot from it would wait for itself).
func NewTracker(onUpdate func(Update), def Timing) *Tracker {
	if onUpdate == nil {
		onUpdate = func(Update) {}
	}
	return &Tracker{
		onUpdate:   onUpdate,
		def:        def.normal(),
		in:         make(chan request, inputBuffer),
		done:       make(chan struct{}),
		workspaces: make(map[string]*workspace),
	}
}

// Run is the owning goroutine: it applies inputs in the order they were
// sent and fires timers. It returns nil when ctx is done, stopping every
// timer; inputs still queued are dropped. It may be called once; a second
// call returns ErrStarted.
func (t *Tracker) Run(ctx context.Context) error {
	if !t.started.CompareAndSwap(false, true) {
		return ErrStarted
	}
	defer close(t.done)

	// One runtime timer stands for all of them: it is set to the earliest
	// deadline of the heap.
	clock := time.NewTimer(time.Hour)
	clock.Stop()
	defer clock.Stop()
	var armed time.Time // when clock fires; zero while stopped

	for {
		select {
		case <-ctx.Done():
			return nil
		case r := <-t.in:
			t.handle(r, time.Now())
		case <-clock.C:
			armed = time.Time{}
			t.fire(time.Now())
		}
		if at := t.timers.first(); !at.Equal(armed) {
			if at.IsZero() {
				clock.Stop()
			} else {
				clock.Reset(time.Until(at))
			}
			armed = at
		}
	}
}

func (t *Tracker) handle(r request, now time.Time) {
	switch r.op {
	case opInput:
		ws := t.workspace(r.in.Key.Workspace)
		a, known := ws.agents[r.in.Key.Agent]
		if !known {
			a = newAgent(r.in.Key)
		}
		t.apply(ws, a, r.in, now)
		// Remember only agents with something to remember: an activity or
		// logout for an agent never seen leaves nothing behind.
		if !known && a.state != blank {
			ws.agents[r.in.Key.Agent] = a
		}
	case opConfigure:
		ws := t.workspace(r.in.Key.Workspace)
		timing := r.timing.normal()
		if timing == ws.timing {
			return
		}
		ws.timing = timing
		// In agent order, so the updates of one change come out the same
		// every time; a configuration change is rare enough to sort.
		for _, id := range slices.Sorted(maps.Keys(ws.agents)) {
			a := ws.agents[id]
			t.apply(ws, a, Input{Key: a.key, Kind: InputRetime}, now)
		}
	case opSnapshot:
		var s snapshot
		if ws := t.workspaces[r.in.Key.Workspace]; ws != nil {
			if a := ws.agents[r.in.Key.Agent]; a != nil {
				s = snapshot{state: a.state, known: true}
			}
		}
		if !s.known {
			s.state = blank
		}
		r.reply <- s
	}
}

// fire applies every timer that is due.
func (t *Tracker) fire(now time.Time) {
	for len(t.timers) > 0 && !t.timers[0].at.After(now) {
		e := heap.Pop(&t.timers).(*timerEntry)
		kind := InputGraceTimer
		if e.kind == TimerIdle {
			kind = InputIdleTimer
		}
		t.apply(t.workspace(e.agent.key.Workspace), e.agent, Input{Key: e.agent.key, Kind: kind}, now)
	}
}

func (t *Tracker) apply(ws *workspace, a *agent, in Input, now time.Time) {
	a.state, t.fx = next(a.state, in, now, ws.timing, t.fx[:0])
	for _, f := range t.fx {
		switch f.Kind {
		case EffectEmit:
			t.onUpdate(f.Update)
		case EffectArm:
			t.timers.arm(&a.timers[f.Timer-1], f.At)
		case EffectCancel:
			t.timers.cancel(&a.timers[f.Timer-1])
		}
	}
}

func (t *Tracker) workspace(id string) *workspace {
	ws := t.workspaces[id]
	if ws == nil {
		ws = &workspace{timing: t.def, agents: make(map[string]*agent)}
		t.workspaces[id] = ws
	}
	return ws
}

// blank is the state of an agent the tracker knows nothing about.
var blank = State{Status: Offline}

func newAgent(k Key) *agent {
	a := &agent{key: k, state: blank}
	for i := range a.timers {
		a.timers[i] = timerEntry{agent: a, kind: Timer(i + 1), index: -1}
	}
	return a
}

// send queues r for the Run goroutine. While the buffer is full it waits
// for Run to take one: an input is never lost while Run runs. Once Run has
// returned it gives up at once.
func (t *Tracker) send(r request) {
	select {
	case t.in <- r:
	case <-t.done:
	}
}

func (t *Tracker) input(ws, agent string, kind InputKind) {
	t.send(request{op: opInput, in: Input{Key: Key{ws, agent}, Kind: kind}})
}

// Connect counts a new connection of the agent.
func (t *Tracker) Connect(ws, agent string) { t.input(ws, agent, InputConnect) }

// Disconnect counts a connection of the agent ending, whether it closed or
// was found dead.
func (t *Tracker) Disconnect(ws, agent string) { t.input(ws, agent, InputDisconnect) }

// Activity records activity on one of the agent's connections.
func (t *Tracker) Activity(ws, agent string) { t.input(ws, agent, InputActivity) }

// Logout takes the agent offline at once.
func (t *Tracker) Logout(ws, agent string) { t.input(ws, agent, InputLogout) }

// ForceOffline takes the agent offline at once, on an admin's order.
func (t *Tracker) ForceOffline(ws, agent string) { t.input(ws, agent, InputForceOffline) }

// SetAway records the agent's choice: away (sticky) or available.
func (t *Tracker) SetAway(ws, agent string, away bool) {
	t.send(request{op: opInput, in: Input{Key: Key{ws, agent}, Kind: InputSetAway, ManualAway: away}})
}

// Configure sets a workspace's timing. It applies to running timers: a
// running grace is re-counted from when the last connection ended with the
// new length (a shorter grace that has already run out takes the agent
// offline at once), and idle timeouts are re-counted from the last activity.
func (t *Tracker) Configure(ws string, timing Timing) {
	t.send(request{op: opConfigure, in: Input{Key: Key{Workspace: ws}}, timing: timing})
}

// Restore installs a presence stored before a restart, for an agent with no
// connection: status online or away, the sticky manual away, and the grace
// deadline that was running (the caller passes now+grace when none was
// stored; a zero deadline means the same). The grace runs until that
// deadline; an overdue one takes the agent offline at once with reason
// grace_expired. Restoring an offline agent only carries over manual away,
// so their next connection comes back away.
func (t *Tracker) Restore(ws, agent string, status Status, manualAway bool, graceDeadline time.Time) {
	t.send(request{op: opInput, in: Input{
		Key:           Key{ws, agent},
		Kind:          InputRestore,
		Status:        status,
		ManualAway:    manualAway,
		GraceDeadline: graceDeadline,
	}})
}

// Snapshot returns the agent's state as the tracker goroutine sees it, and
// whether the tracker knows the agent. It waits for the inputs sent before
// it to be applied; once Run has returned it reports an unknown agent.
func (t *Tracker) Snapshot(ws, agent string) (State, bool) {
	reply := make(chan snapshot, 1)
	t.send(request{op: opSnapshot, in: Input{Key: Key{ws, agent}}, reply: reply})
	select {
	case s := <-reply:
		return s.state, s.known
	case <-t.done:
		// Run may have answered just before returning.
		select {
		case s := <-reply:
			return s.state, s.known
		default:
			return blank, false
		}
	}
}

// timerEntry is one armed (or disarmed) timer of one agent.
type timerEntry struct {
	at    time.Time
	agent *agent
	kind  Timer
	index int // position in the heap; -1 when not armed
}

// timerHeap orders armed timers by deadline. Each entry knows its index, so
// re-arming on every activity is a Fix, not a new entry.
type timerHeap []*timerEntry

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}

func (h *timerHeap) Push(x any) {
	e := x.(*timerEntry)
	e.index = len(*h)
	*h = append(*h, e)
}

func (h *timerHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}

func (h *timerHeap) arm(e *timerEntry, at time.Time) {
	e.at = at
	if e.index >= 0 {
		heap.Fix(h, e.index)
		return
	}
	heap.Push(h, e)
}

func (h *timerHeap) cancel(e *timerEntry) {
	if e.index >= 0 {
		heap.Remove(h, e.index)
	}
}

// first is the earliest deadline, zero when nothing is armed.
func (h timerHeap) first() time.Time {
	if len(h) == 0 {
		return time.Time{}
	}
	return h[0].at
}

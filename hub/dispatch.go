package hub

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// Dispatcher hands committed events to the hub's fan-out on a goroutine of
// its own. The store calls Publish from its commit loop, and a broadcast to
// ten thousand sockets takes milliseconds even when it only queues; with a
// Dispatcher between them, the next commit (of any workspace) never waits
// for the last broadcast.
//
// Order is kept: events reach the hub in the order Publish received them,
// so each workspace's events stay in sequence order. The queue is not
// bounded: Publish must not block the committer, and the queue only grows
// while fan-out is slower than commits; Backlog tells how far behind it is.
//
// It also keeps replies behind their events (WaitDelivered): a reply that
// carries sequence number N is queued only once every event up to N that
// was handed to the Dispatcher has reached the sockets. protocol.md tells
// a client to resume from the highest seq it has seen, replies included; a
// reply overtaking an event would make a socket that drops in between lose
// that event for good. The wait is the requester's alone: commits never
// wait for it.
type Dispatcher struct {
	mu      sync.Mutex
	queue   []dispatchItem         // guarded by mu: published, not yet taken by Run
	handing int                    // guarded by mu: taken by Run, not yet handed on
	queued  map[string]uint64      // guarded by mu: highest seq published, per workspace
	done    map[string]uint64      // guarded by mu: highest seq handed on, per workspace
	waiters map[string][]seqWaiter // guarded by mu: replies waiting for done
	wake    chan struct{}          // capacity 1: "queue is not empty"
}

type dispatchItem struct {
	ws     string
	events []queues.Event
}

type seqWaiter struct {
	seq  uint64
	done chan struct{}
}

// NewDispatcher returns a Dispatcher; Run hands its events on.
func NewDispatcher() *Dispatcher {
	return &Dispatcher{
		queued:  make(map[string]uint64),
		done:    make(map[string]uint64),
		waiters: make(map[string][]seqWaiter),
		wake:    make(chan struct{}, 1),
	}
}

// Publish queues events and returns at once.
func (d *Dispatcher) Publish(ws string, events []queues.Event) {
	if len(events) == 0 {
		return
	}
	d.mu.Lock()
	d.queue = append(d.queue, dispatchItem{ws: ws, events: events})
	d.queued[ws] = max(d.queued[ws], lastSeq(events))
	d.mu.Unlock()
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Backlog is how many Publish calls are waiting to be handed on.
func (d *Dispatcher) Backlog() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue) + d.handing
}

// WaitDelivered returns once every event of ws up to seq that was
// published here has been handed on, or after max (a stalled fan-out must
// not hold a reply forever). It reports whether that point was reached.
// Events published before this process started need no waiting.
func (d *Dispatcher) WaitDelivered(ws string, seq uint64, max time.Duration) bool {
	d.mu.Lock()
	target := min(seq, d.queued[ws])
	if d.done[ws] >= target {
		d.mu.Unlock()
		return true
	}
	w := seqWaiter{seq: target, done: make(chan struct{})}
	d.waiters[ws] = append(d.waiters[ws], w)
	d.mu.Unlock()
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-w.done:
		return true
	case <-t.C:
		return false
	}
}

// Run hands queued events on to next until ctx is done, then hands on what
// is still queued and returns.
func (d *Dispatcher) Run(ctx context.Context, next queues.Publisher) {
	var batch []dispatchItem
	for {
		select {
		case <-d.wake:
		case <-ctx.Done():
			d.flush(next, batch)
			return
		}
		batch = d.flush(next, batch)
	}
}

// flush hands on everything queued, reusing batch's backing array.
//
// What queued up for one workspace while the last hand-over ran goes on
// in one Publish call, in order: every connection then queues all of it
// at once and its writer packs it into one frame. Under load this is what
// turns many small writes into few large ones: the further fan-out falls
// behind, the more each write carries.
func (d *Dispatcher) flush(next queues.Publisher, batch []dispatchItem) []dispatchItem {
	for {
		d.mu.Lock()
		batch, d.queue = d.queue, batch[:0]
		d.handing = len(batch)
		d.mu.Unlock()
		if len(batch) == 0 {
			return batch
		}
		d.handOn(next, merge(batch))
		clear(batch) // drop the events: the hub keeps what it needs
	}
}

// handOn publishes items, each workspace's once. Handing on is mostly
// writing to sockets, so with several workspaces waiting they are spread
// over as many goroutines as there are cores; it returns when all are
// done, so the next hand-over of a workspace starts after this one.
func (d *Dispatcher) handOn(next queues.Publisher, items []mergedItem) {
	one := func(it mergedItem) {
		next.Publish(it.ws, it.events)
		d.handedOn(it.ws, lastSeq(it.events), it.n)
	}
	parts := min(runtime.GOMAXPROCS(0), len(items))
	if parts <= 1 {
		for _, it := range items {
			one(it)
		}
		return
	}
	var wg sync.WaitGroup
	for p := 1; p < parts; p++ {
		wg.Go(func() { // ends when its share is handed on
			for i := p; i < len(items); i += parts {
				one(items[i])
			}
		})
	}
	for i := 0; i < len(items); i += parts {
		one(items[i])
	}
	wg.Wait()
}

// mergedItem is one workspace's events from n Publish calls.
type mergedItem struct {
	ws     string
	events []queues.Event
	n      int
}

// merge joins the items of each workspace, keeping their order; the
// workspaces come in the order of their first item.
func merge(batch []dispatchItem) []mergedItem {
	out := make([]mergedItem, 0, 1)
	at := map[string]int(nil)
	for _, it := range batch {
		i, ok := -1, false
		if len(out) == 1 && out[0].ws == it.ws {
			i, ok = 0, true // the common case: a single busy workspace
		} else if len(out) > 0 {
			if at == nil {
				at = make(map[string]int, len(batch))
				for j, m := range out {
					at[m.ws] = j
				}
			}
			i, ok = at[it.ws]
		}
		if !ok {
			if at != nil {
				at[it.ws] = len(out)
			}
			out = append(out, mergedItem{ws: it.ws, events: it.events, n: 1})
			continue
		}
		m := &out[i]
		if m.n == 1 {
			// Copy rather than append to the publisher's slice.
			m.events = append(make([]queues.Event, 0, len(m.events)+len(it.events)), m.events...)
		}
		m.events = append(m.events, it.events...)
		m.n++
	}
	return out
}

// handedOn records that ws's events up to seq, from n Publish calls,
// reached the sockets, and releases the replies waiting for that.
func (d *Dispatcher) handedOn(ws string, seq uint64, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.handing -= n
	if seq <= d.done[ws] {
		return
	}
	d.done[ws] = seq
	waiting := d.waiters[ws]
	kept := waiting[:0]
	for _, w := range waiting {
		if w.seq <= seq {
			close(w.done)
		} else {
			kept = append(kept, w)
		}
	}
	if len(kept) == 0 {
		delete(d.waiters, ws)
	} else {
		d.waiters[ws] = kept
	}
}

// lastSeq is the highest sequence number among events.
func lastSeq(events []queues.Event) uint64 {
	var n uint64
	for i := range events {
		n = max(n, events[i].Seq)
	}
	return n
}

// resultSeq is the sequence number a reply's result carries, 0 for none.
func resultSeq(result any) uint64 {
	switch r := result.(type) {
	case convResult:
		return r.Seq
	case subscribePage:
		return r.Seq
	case subscribeResumed:
		return r.Seq
	case queues.Page:
		return r.Seq
	}
	return 0
}

package hub

import (
	"context"
	"sync"

	"github.com/presencehub/presencehub/queues"
)

// Dispatcher hands committed events to a Publisher (the Hub) on a goroutine
// of its own. The store calls Publish from its commit loop, and a broadcast
// to ten thousand sockets takes milliseconds even when it only queues; with
// a Dispatcher between them, the next commit (of any workspace) never waits
// for the last broadcast, and callers get their answers as soon as their
// change is durable.
//
// Order is kept: events reach next in the order Publish received them, so
// each workspace's events stay in sequence order. The queue is not bounded:
// Publish must not block the committer, and the queue only grows while
// fan-out is slower than commits; Backlog tells how far behind it is.
type Dispatcher struct {
	next queues.Publisher

	mu    sync.Mutex
	queue []dispatchItem // guarded by mu: published, not yet handed on
	wake  chan struct{}  // capacity 1: "queue is not empty"
}

type dispatchItem struct {
	ws     string
	events []queues.Event
}

// NewDispatcher returns a Dispatcher handing events on to next. Run must be
// running for anything to reach next.
func NewDispatcher(next queues.Publisher) *Dispatcher {
	return &Dispatcher{next: next, wake: make(chan struct{}, 1)}
}

// Publish queues events and returns at once.
func (d *Dispatcher) Publish(ws string, events []queues.Event) {
	if len(events) == 0 {
		return
	}
	d.mu.Lock()
	d.queue = append(d.queue, dispatchItem{ws: ws, events: events})
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
	return len(d.queue)
}

// Run hands queued events on until ctx is done, then hands on what is
// still queued and returns.
func (d *Dispatcher) Run(ctx context.Context) {
	var batch []dispatchItem
	for {
		select {
		case <-d.wake:
		case <-ctx.Done():
			d.flush(batch)
			return
		}
		batch = d.flush(batch)
	}
}

// flush hands on everything queued, reusing batch's backing array.
func (d *Dispatcher) flush(batch []dispatchItem) []dispatchItem {
	for {
		d.mu.Lock()
		batch, d.queue = d.queue, batch[:0]
		d.mu.Unlock()
		if len(batch) == 0 {
			return batch
		}
		for _, it := range batch {
			d.next.Publish(it.ws, it.events)
		}
		clear(batch) // drop the events: the hub keeps what it needs
	}
}

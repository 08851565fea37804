package hub

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

type blockingPublisher struct {
	release chan struct{}
	mu      sync.Mutex
	got     map[string][]uint64
	calls   map[string]int
}

func (p *blockingPublisher) Publish(ws string, events []queues.Event) {
	<-p.release
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == nil {
		p.calls = map[string]int{}
	}
	p.calls[ws]++
	for _, ev := range events {
		p.got[ws] = append(p.got[ws], ev.Seq)
	}
}

// TestDispatcherNeverBlocksAndKeepsOrder: while the fan-out behind it is
// stuck, Publish still returns at once; when it resumes, every workspace's
// events arrive in the order published, what queued up meanwhile goes on in
// a few calls rather than one per Publish, and Run hands on what is left
// when it is stopped.
func TestDispatcherNeverBlocksAndKeepsOrder(t *testing.T) {
	next := &blockingPublisher{release: make(chan struct{}), got: map[string][]uint64{}}
	d := NewDispatcher()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx, next); close(done) }() // ends when ctx is cancelled and the queue is handed on

	const n = 1000
	published := make(chan struct{})
	go func() { // ends after n publishes per workspace
		for i := range uint64(n) {
			d.Publish("a", []queues.Event{{Seq: i + 1}})
			d.Publish("b", []queues.Event{{Seq: i + 1}})
		}
		close(published)
	}()
	select {
	case <-published:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked behind a stuck fan-out")
	}
	if b := d.Backlog(); b == 0 {
		t.Fatalf("got backlog %d while the fan-out is stuck, want more than 0", b)
	}
	stop() // Run must still hand on everything queued
	close(next.release)
	<-done
	for _, ws := range []string{"a", "b"} {
		got := next.got[ws]
		if len(got) != n {
			t.Fatalf("workspace %s: got %d events, want %d", ws, len(got), n)
		}
		for i, seq := range got {
			if seq != uint64(i+1) {
				t.Fatalf("workspace %s: event %d has seq %d, want %d", ws, i, seq, i+1)
			}
		}
		if calls := next.calls[ws]; calls > 10 {
			t.Errorf("workspace %s: %d events came in %d calls, want what queued up merged into a few", ws, n, calls)
		}
	}
	if b := d.Backlog(); b != 0 {
		t.Errorf("got backlog %d after everything was handed on, want 0", b)
	}
}

// TestWaitDeliveredHoldsRepliesBehindTheirEvents: a reply's seq waits only
// for events this dispatcher was given and has not handed on yet.
func TestWaitDeliveredHoldsRepliesBehindTheirEvents(t *testing.T) {
	next := &blockingPublisher{release: make(chan struct{}), got: map[string][]uint64{}}
	d := NewDispatcher()
	// Nothing published for the workspace in this process (a restart):
	// every earlier event is as delivered as it will ever be.
	if !d.WaitDelivered("a", 5000, time.Second) {
		t.Fatal("got a wait for a workspace with nothing in flight, want none")
	}
	d.Publish("a", []queues.Event{{Seq: 5001}})
	if d.WaitDelivered("a", 5001, 50*time.Millisecond) {
		t.Fatal("got seq 5001 delivered before anything was handed on")
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx, next); close(done) }() // ends when ctx is cancelled
	waited := make(chan bool, 1)
	go func() { waited <- d.WaitDelivered("a", 5001, 10*time.Second) }() // ends within 10 s
	close(next.release)
	if !<-waited {
		t.Fatal("got no delivery of seq 5001 after the fan-out ran")
	}
	stop()
	<-done
}

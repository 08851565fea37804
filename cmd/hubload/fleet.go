package main

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"
)

// member is one agent connection of a fleet.
type member struct {
	ws  int    // workspace index
	sub string // agent id
	c   *websocket.Conn
}

// fleet is a set of agent connections, each with its reader goroutine.
type fleet struct {
	members []member
	readers sync.WaitGroup
	closing atomic.Bool

	mu      sync.Mutex     // guards dropped
	dropped map[string]int // close code -> connections the hub ended before we did

	connect   *hist // dial until hello read
	subscribe *hist // subscribe request until its reply
	retries   atomic.Int64
	elapsed   time.Duration // connecting all of them
	badFrames atomic.Int64
}

// handlerFunc handles one message read by member i at time at.
type handlerFunc func(i int, m *message, at time.Duration)

// connectFleet opens n agent connections, e.cfg.concurrency at a time: who
// names connection i's workspace and agent id. With sub, each subscribes
// to the new queue with filter all. Each connection then gets a reader
// goroutine handing every message to h (parsed only with parse; see
// readLoop). It fails if a connection cannot
// be made after three tries (the hub refusing connections is a setup
// failure, not a measurement).
func (e *env) connectFleet(ctx context.Context, n int, who func(i int) (ws int, sub string), sub, parse bool, h handlerFunc) (*fleet, error) {
	f := &fleet{
		members:   make([]member, n),
		dropped:   make(map[string]int),
		connect:   newHist(),
		subscribe: newHist(),
	}
	// Tokens are minted before the clock starts: a console gets its token
	// from the helpdesk backend before it connects, and signing them here
	// would take the cores the hub is measured on. The hub still verifies
	// each one.
	for i := range n {
		ws, agent := who(i)
		if _, err := e.mint.token(e.wsID(ws), agent, "agent"); err != nil {
			return nil, err
		}
	}
	for i := range n {
		ws, agent := who(i)
		f.members[i] = member{ws: ws, sub: agent}
	}
	// A fixed set of workers, each taking the next connection until none
	// is left: a goroutine per connection grew a fresh stack through the
	// dial and handshake every time, 7 % of the tool's CPU in a connect
	// run, on the cores the hub is measured on.
	g, gctx := errgroup.WithContext(ctx)
	start := time.Now()
	var next, done atomic.Int64
	lastLog := atomic.Int64{}
	for range min(e.cfg.concurrency, n) {
		g.Go(func() error { // ends when no connection is left, or one failed
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				if err := gctx.Err(); err != nil {
					return err // cancelled: not connected is not done
				}
				var err error
				for try := range 3 {
					if try > 0 {
						f.retries.Add(1)
						if !sleep(gctx, time.Duration(try)*500*time.Millisecond) {
							return gctx.Err()
						}
					}
					if err = f.open(gctx, e, i, sub, parse, h); err == nil {
						break
					}
				}
				if err != nil {
					return err
				}
				if d := done.Add(1); time.Since(start) > time.Duration(lastLog.Load())+5*time.Second {
					lastLog.Store(int64(time.Since(start)))
					e.logf("connected %d of %d", d, n)
				}
			}
		})
	}
	err := g.Wait()
	f.elapsed = time.Since(start)
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// open connects member i and starts its reader.
func (f *fleet) open(ctx context.Context, e *env, i int, sub, parse bool, h handlerFunc) error {
	m := &f.members[i]
	t0 := time.Now()
	c, _, err := e.dialAgent(ctx, e.wsID(m.ws), m.sub, "agent")
	if err != nil {
		return err
	}
	f.connect.record(time.Since(t0))
	if sub {
		t1 := time.Now()
		// Events that arrive before the reply (presence of agents connecting
		// meanwhile) are handed on like any other.
		if err := subscribe(ctx, c, func(msg *message) { h(i, msg, e.since()) }); err != nil {
			c.CloseNow()
			return fmt.Errorf("%s/%s: %w", e.wsID(m.ws), m.sub, err)
		}
		f.subscribe.record(time.Since(t1))
	}
	m.c = c
	f.readers.Add(1)
	go func() { // ends when the connection closes: ours at the end, or the hub's
		defer f.readers.Done()
		err := readLoop(c, e.epoch, parse, func(msg *message, at time.Duration) { h(i, msg, at) },
			func(error) { f.badFrames.Add(1) })
		if !f.closing.Load() {
			name := closeName(err)
			f.mu.Lock()
			f.dropped[name]++
			first := f.dropped[name] <= maxLoggedErrors
			f.mu.Unlock()
			if first {
				// The count says how; the error says why.
				e.logf("%s/%s: connection ended before the run did: %v", e.wsID(m.ws), m.sub, err)
			}
		}
	}()
	return nil
}

// closeName names how a connection ended, for the report.
func closeName(err error) string {
	if code := closeCode(err); code >= 0 {
		return fmt.Sprintf("close_%d", code)
	}
	return "eof_or_error"
}

// droppedCount is how many connections the hub ended while the fleet was up.
func (f *fleet) droppedCount() (map[string]int, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int, len(f.dropped))
	total := 0
	for k, v := range f.dropped {
		out[k] = v
		total += v
	}
	return out, total
}

// close ends every connection and waits (bounded) for the readers.
func (f *fleet) close() {
	f.closing.Store(true)
	for i := range f.members {
		if c := f.members[i].c; c != nil {
			c.CloseNow()
		}
	}
	done := make(chan struct{})
	go func() { f.readers.Wait(); close(done) }() // ends when every reader has returned
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
}

// quiet waits until no message has arrived for idle (as counted by
// received), or until limit passes. It lets the storm of presence events
// that connecting thousands of agents causes die down before measuring.
func quiet(ctx context.Context, received func() int64, idle, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	last, lastChange := received(), time.Now()
	for time.Now().Before(deadline) {
		if !sleep(ctx, 100*time.Millisecond) {
			return false
		}
		if n := received(); n != last {
			last, lastChange = n, time.Now()
		} else if time.Since(lastChange) >= idle {
			return true
		}
	}
	return false
}

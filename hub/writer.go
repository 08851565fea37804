package hub

import (
	"context"
	"errors"
	"sync"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// The outgoing side of a connection. Fan-out and replies append to a
// connection's sendQueue; a writer goroutine exists only while the queue
// has something in it: it takes everything queued, packs it into as few
// frames as it can, writes them, and ends when the queue is empty. An idle
// connection therefore costs no goroutine and no buffer on this side.

// outMsg is one message waiting to be written.
type outMsg struct {
	// b is the message's JSON. An event's bytes are the store's Wire,
	// shared by every recipient and never modified.
	b []byte
	// seq is the event's sequence number; 0 for hello and replies.
	seq uint64
	// agent is, for a presence event, whose presence it is: the key under
	// which presence events coalesce when the queue overflows.
	agent string
	// note is, for a notification event, the notification's own sequence
	// number (hello drops the ones it already lists).
	note uint64
	// viewOnly marks a conversation event queued only because it matches
	// the view being subscribed (see conn.subscribe).
	viewOnly bool
}

// sendQueue is a connection's outgoing messages, oldest first. Its methods
// are not safe for concurrent use: the connection's mu guards it.
type sendQueue struct {
	msgs []outMsg
}

// msgPool recycles queue slices between a writer that has written a batch
// and the next queue that needs one, so a broadcast to thousands of idle
// connections does not allocate a slice per connection.
var msgPool = sync.Pool{New: func() any { s := make([]outMsg, 0, 8); return &s }}

func (q *sendQueue) len() int { return len(q.msgs) }

// push appends m unless the queue already holds max messages. When it is
// full, presence events coalesce first (only the latest of each agent's is
// kept, m included); push reports false if the queue is still full after
// that.
func (q *sendQueue) push(m outMsg, max int) bool {
	if len(q.msgs) >= max {
		if m.agent != "" {
			q.keep(func(_ int, old *outMsg) bool { return old.agent != m.agent })
		}
		q.coalesce()
		if len(q.msgs) >= max {
			return false
		}
	}
	if q.msgs == nil {
		q.msgs = (*msgPool.Get().(*[]outMsg))[:0]
	}
	q.msgs = append(q.msgs, m)
	return true
}

// coalesce drops every presence event followed in the queue by a newer one
// for the same agent. The survivors keep their order, so the sequence
// numbers a client sees still only grow, and what it skips is superseded:
// presence events carry the agent's whole record.
func (q *sendQueue) coalesce() {
	latest := make(map[string]int) // agent -> index of its newest presence event
	for i, m := range q.msgs {
		if m.agent != "" {
			latest[m.agent] = i
		}
	}
	q.keep(func(i int, m *outMsg) bool { return m.agent == "" || latest[m.agent] == i })
}

// keep retains the messages for which f is true, in order.
func (q *sendQueue) keep(f func(i int, m *outMsg) bool) {
	n := 0
	for i := range q.msgs {
		if f(i, &q.msgs[i]) {
			q.msgs[n] = q.msgs[i]
			n++
		}
	}
	clear(q.msgs[n:]) // release the dropped messages' bytes
	q.msgs = q.msgs[:n]
}

// take removes and returns everything queued.
func (q *sendQueue) take() []outMsg {
	m := q.msgs
	q.msgs = nil
	return m
}

// drop discards everything queued.
func (q *sendQueue) drop() {
	if q.msgs != nil {
		recycle(q.msgs)
		q.msgs = nil
	}
}

// recycle returns a taken slice to msgPool.
func recycle(m []outMsg) {
	clear(m)
	m = m[:0]
	msgPool.Put(&m)
}

// pushFront puts m before everything queued (the hello).
func (q *sendQueue) pushFront(m outMsg) {
	q.msgs = append(q.msgs, outMsg{})
	copy(q.msgs[1:], q.msgs)
	q.msgs[0] = m
}

// dropThrough discards the events at or below seq, and the notification
// events whose notification is in shown: a hello reflects them already.
func (q *sendQueue) dropThrough(seq uint64, shown map[uint64]bool) {
	q.keep(func(_ int, m *outMsg) bool {
		if m.seq == 0 {
			return true
		}
		return m.seq > seq && (m.note == 0 || !shown[m.note])
	})
}

// place settles a subscribe (conn.subscribe): the events queued only for
// the new view that its reply already reflects (seq <= floor) go, the
// others now belong to the active view, and the reply goes in before the
// first event newer than floor, so the client learns about the view before
// any event of it.
func (q *sendQueue) place(reply outMsg, floor uint64) {
	q.keep(func(_ int, m *outMsg) bool { return !m.viewOnly || m.seq > floor })
	at := len(q.msgs)
	for i := range q.msgs {
		q.msgs[i].viewOnly = false
		if q.msgs[i].seq > floor && at == len(q.msgs) {
			at = i
		}
	}
	if q.msgs == nil {
		q.msgs = (*msgPool.Get().(*[]outMsg))[:0]
	}
	q.msgs = append(q.msgs, outMsg{})
	copy(q.msgs[at+1:], q.msgs[at:])
	q.msgs[at] = reply
}

// dropViewOnly discards the events queued only for a view whose subscribe
// failed.
func (q *sendQueue) dropViewOnly() {
	q.keep(func(_ int, m *outMsg) bool { return !m.viewOnly })
}

// maxPack is how many bytes of queued messages a writer packs into one
// frame. A single bigger message (a page of many conversations) goes in a
// frame of its own.
const maxPack = 64 << 10

// framePool recycles the buffers writers pack frames into.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, maxPack); return &b }}

// pack joins the first messages of msgs with '\n' into one frame of at
// most limit bytes (one message at least) and reports how many it took. A
// lone message is returned as it is, without a copy; otherwise the frame
// is built in dst.
func pack(dst []byte, msgs []outMsg, limit int) ([]byte, int) {
	if len(msgs) == 1 || len(msgs[0].b)+1+len(msgs[1].b) > limit {
		return msgs[0].b, 1
	}
	dst = append(dst[:0], msgs[0].b...)
	n := 1
	for n < len(msgs) && len(dst)+1+len(msgs[n].b) <= limit {
		dst = append(dst, '\n')
		dst = append(dst, msgs[n].b...)
		n++
	}
	return dst, n
}

// route decides whether ev goes to this connection, and how it is queued.
// Called with c.mu held.
func (c *conn) route(ev *queues.Event) (outMsg, bool) {
	m := outMsg{b: ev.Wire, seq: ev.Seq}
	if ev.Seq <= c.floor {
		// Published after hello read the state that reflects it.
		return m, false
	}
	switch ev.Kind {
	case queues.EventConversation:
		active, pending := false, false
		for _, v := range c.views {
			if !v.wants(ev) {
				continue
			}
			if !v.pending {
				active = true
				break
			}
			pending = true
		}
		if !active && !pending {
			return m, false
		}
		m.viewOnly = !active
	case queues.EventNotification:
		if ev.Notification == nil || ev.Notification.Agent != c.id.Agent {
			return m, false
		}
		m.note = ev.Notification.Seq
	case queues.EventPresence:
		if ev.Presence != nil {
			m.agent = ev.Presence.Agent
		}
	}
	return m, true
}

// deliver queues the events this connection should see. It never blocks:
// a connection too far behind is closed as a slow consumer, by its writer,
// off the caller's path. It reports how many events it queued.
func (c *conn) deliver(events []queues.Event) int {
	queued, slow := 0, false
	c.mu.Lock()
	if c.closing || c.finished {
		c.mu.Unlock()
		return 0
	}
	for i := range events {
		m, ok := c.route(&events[i])
		if !ok {
			continue
		}
		if !c.q.push(m, c.h.cfg.SendQueue) {
			slow = true
			break
		}
		queued++
	}
	c.unlockQueued(slow)
	return queued
}

// enqueue queues a message the connection itself produced (a reply).
func (c *conn) enqueue(m outMsg) {
	c.mu.Lock()
	if c.closing || c.finished {
		c.mu.Unlock()
		return
	}
	c.unlockQueued(!c.q.push(m, c.h.cfg.SendQueue))
}

// unlockQueued ends a critical section that queued messages: it closes the
// connection as a slow consumer when the queue overflowed, else makes sure
// a writer runs; then it unlocks c.mu, and starts the writer and reports
// the slow consumer outside the lock.
func (c *conn) unlockQueued(slow bool) {
	var start bool
	if slow {
		start = c.shutLocked(CloseSlowConsumer, "slow consumer", false)
	} else {
		start = c.kickLocked()
	}
	c.mu.Unlock()
	if start {
		go c.writeLoop() // ends when the queue is drained, or after the close
	}
	if slow {
		c.h.obs.SlowConsumer()
		c.h.log.Warn("slow consumer closed", "ws", c.id.Workspace, "agent", c.id.Agent, "queued", c.h.cfg.SendQueue)
	}
}

// kickLocked reports whether a writer must be started for what is queued,
// and if so counts it in c.wg. Called with c.mu held; the caller starts
// writeLoop after unlocking.
func (c *conn) kickLocked() bool {
	if c.writing || c.held || c.closing || c.finished || c.q.len() == 0 {
		return false
	}
	c.writing = true
	c.wg.Add(1)
	return true
}

// shutLocked starts closing the connection with code: nothing more is
// queued, and the writer sends what is already queued when flush is set
// (a logout reply), then the close frame. It reports whether the caller
// must start the writer. Called with c.mu held.
func (c *conn) shutLocked(code websocket.StatusCode, reason string, flush bool) bool {
	if c.closing || c.finished {
		return false
	}
	c.closing = true
	c.code, c.reason = code, reason
	if !flush {
		c.q.drop()
		c.dropped.Store(true)
	}
	if c.writing {
		return false // the running writer closes when it is done
	}
	c.writing = true
	c.wg.Add(1)
	return true
}

// shut starts closing the connection with code; it never blocks.
func (c *conn) shut(code websocket.StatusCode, reason string, flush bool) {
	c.mu.Lock()
	start := c.shutLocked(code, reason, flush)
	c.mu.Unlock()
	if start {
		go c.writeLoop() // ends after the close handshake
	}
}

// writeLoop writes what is queued until the queue is empty, then ends. On a
// closing connection it ends after sending the close frame and waiting for
// the close handshake. At most one runs per connection (c.writing).
func (c *conn) writeLoop() {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if c.closing && (c.q.len() == 0 || c.dropped.Load()) {
			c.q.drop()
			code, reason := c.code, c.reason
			c.mu.Unlock()
			// writing stays set: nothing may be written after the close.
			c.closeSocket(code, reason)
			return
		}
		if c.q.len() == 0 || (c.held && !c.closing) {
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.q.take()
		c.mu.Unlock()

		err := c.writeBatch(batch)
		recycle(batch)
		if err != nil {
			// A failed write closes the socket (the library does when the
			// deadline passes; any other failure leaves it unusable); the
			// reader sees that and finishes the connection.
			c.raw.Close()
			c.mu.Lock()
			if !c.closing {
				c.closing = true
				c.code, c.reason = websocket.StatusAbnormalClosure, "write failed"
			}
			c.q.drop()
			c.mu.Unlock()
			// A write that ran out of time is a client not reading: a slow
			// consumer caught by the deadline rather than by the queue's
			// bound, and operators must see it. Any other failure is the
			// peer going away.
			if errors.Is(err, context.DeadlineExceeded) {
				c.h.obs.SlowConsumer()
				c.h.log.Warn("write timed out, closed as slow consumer", "ws", c.id.Workspace, "agent", c.id.Agent,
					"timeout", c.h.cfg.WriteTimeout)
			} else {
				c.h.log.Debug("write failed", "ws", c.id.Workspace, "agent", c.id.Agent, "err", err)
			}
			return
		}
	}
}

// writeBatch writes msgs in as few frames as maxPack allows. Each write has
// WriteTimeout to finish; a closing connection that dropped its queue stops
// between frames.
func (c *conn) writeBatch(msgs []outMsg) error {
	var buf *[]byte
	defer func() {
		if buf != nil {
			framePool.Put(buf)
		}
	}()
	for len(msgs) > 0 {
		if c.dropped.Load() {
			return nil
		}
		var frame []byte
		n := 1
		if len(msgs) > 1 {
			if buf == nil {
				buf = framePool.Get().(*[]byte)
			}
			frame, n = pack(*buf, msgs, maxPack)
			if n > 1 {
				*buf = frame[:0]
			}
		} else {
			frame = msgs[0].b
		}
		// Not tied to any other context: a closed socket ends the write.
		ctx, cancel := context.WithTimeout(context.Background(), c.h.cfg.WriteTimeout)
		err := c.ws.Write(ctx, websocket.MessageText, frame)
		cancel()
		if err != nil {
			return err
		}
		c.h.obs.Sent(n)
		msgs = msgs[n:]
	}
	return nil
}

package hub

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"time"

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
	// frame is b as a whole WebSocket frame: for an event, prepared once
	// for all recipients (frame.go); for a hello or a change's reply,
	// framed in place in its pooled buffer; nil for other replies, which
	// the writer frames itself.
	frame []byte
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
	// control marks a ping or pong: frame is the whole control frame, b is
	// empty, and it is never packed with messages.
	control bool
	// own, for a hello or a change's reply, is the pooled buffer that
	// holds b and frame, returned by release once the message is written
	// or dropped.
	own *[]byte
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
		release(q.msgs)
		recycle(q.msgs)
		q.msgs = nil
	}
}

// release returns the buffers of messages that are written, or dropped
// for good, to their pool. Only a writer that took them, or drop, calls
// it: a message still queued anywhere must not be released.
func release(msgs []outMsg) {
	for i := range msgs {
		if b := msgs[i].own; b != nil {
			msgs[i].own = nil
			*b = (*b)[:0]
			switch {
			case cap(*b) <= maxPooledReply:
				replyPool.Put(b)
			case cap(*b) <= maxPooledRoster: // a hello is mostly its roster
				helloPool.Put(b)
			}
		}
	}
}

// helloPool and replyPool hold the buffers hellos and the replies to
// changes are built in, each framed in place. A hello is a few kilobytes
// per agent of the workspace, written once and then garbage, which in a
// storm of connects was a quarter of the hub's allocation; a change's
// reply, about 500 bytes, was a tenth of what a durable run allocated
// outside Badger. Two pools, told apart by size when a buffer comes back,
// so that a reply never holds a hello's buffer while it waits in a queue
// and a hello does not regrow a reply's.
var (
	helloPool = sync.Pool{New: func() any { return new([]byte) }}
	replyPool = sync.Pool{New: func() any { return new([]byte) }}
)

// maxPooledReply is the largest buffer replyPool keeps.
const maxPooledReply = 4 << 10

// recycle returns a taken slice to msgPool.
func recycle(m []outMsg) {
	clear(m)
	m = m[:0]
	msgPool.Put(&m)
}

// requeue puts msgs back before everything queued: a writer took them and
// could not write them.
func (q *sendQueue) requeue(msgs []outMsg) {
	if len(msgs) == 0 {
		return
	}
	nq := append((*msgPool.Get().(*[]outMsg))[:0], msgs...)
	nq = append(nq, q.msgs...)
	if q.msgs != nil {
		recycle(q.msgs)
	}
	q.msgs = nq
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
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, maxFrameHeader+maxPack); return &b }}

// pack makes a frame of the first messages of msgs, joined with '\n', of
// at most limit payload bytes (one message at least), and reports how many
// it took. A control frame goes alone, as it is. A lone message that has a prepared frame (an event) is returned
// as it is, without a copy; otherwise the frame is built in dst, unless a
// lone message is too big for it and gets a buffer of its own.
func pack(dst []byte, msgs []outMsg, limit int) ([]byte, int) {
	if msgs[0].control {
		return msgs[0].frame, 1
	}
	if len(msgs) == 1 || msgs[1].control || len(msgs[0].b)+1+len(msgs[1].b) > limit {
		if msgs[0].frame != nil {
			return msgs[0].frame, 1
		}
		if len(msgs[0].b) > limit {
			frame, _ := frameOf(msgs[0].b)
			return frame, 1
		}
	}
	dst = append(dst[:maxFrameHeader], msgs[0].b...)
	n := 1
	for n < len(msgs) && !msgs[n].control && len(dst)-maxFrameHeader+1+len(msgs[n].b) <= limit {
		dst = append(dst, '\n')
		dst = append(dst, msgs[n].b...)
		n++
	}
	return framed(dst), n
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

// deliver queues the events of f this connection should see. It never
// blocks: a connection too far behind is closed as a slow consumer, by its
// writer, off the caller's path. It reports how many events it queued.
func (c *conn) deliver(f *eventFrames) int {
	events := f.events
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
		// The queue holds the frame, and the payload as its tail: one copy
		// of the bytes for every recipient.
		m.frame = f.frame(i)
		m.b = m.frame[len(m.frame)-len(m.b):]
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
// a writer runs; then it unlocks c.mu, and outside the lock writes what it
// can inline or starts the closing writer, and reports the slow consumer.
func (c *conn) unlockQueued(slow bool) {
	if !slow {
		start := c.kickLocked()
		c.mu.Unlock()
		if start {
			c.writeInline()
		}
		return
	}
	start := c.shutLocked(CloseSlowConsumer, "slow consumer", false)
	c.mu.Unlock()
	if start {
		go c.writeLoop(nil) // ends after the close
	}
	c.h.obs.SlowConsumer()
	c.h.log.Warn("slow consumer closed", "ws", c.id.Workspace, "agent", c.id.Agent, "queued", c.h.cfg.SendQueue)
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
		go c.writeLoop(nil) // ends after the close handshake
	}
}

// writeLoop writes pending (the rest of a frame the inline writer could
// not finish), then what is queued until the queue is empty, then ends. On
// a closing connection it ends after sending the close frame and waiting
// for the close handshake. At most one writer, inline or not, runs per
// connection (c.writing).
func (c *conn) writeLoop(pending []byte) {
	defer c.wg.Done()
	for {
		c.mu.Lock()
		if c.closing && ((c.q.len() == 0 && pending == nil) || c.dropped.Load()) {
			c.q.drop()
			code, reason := c.code, c.reason
			c.mu.Unlock()
			// writing stays set: nothing may be written after the close.
			c.closeSocket(code, reason)
			return
		}
		if pending == nil && (c.q.len() == 0 || (c.held && !c.closing)) {
			c.writing = false
			c.mu.Unlock()
			return
		}
		batch := c.q.take()
		c.mu.Unlock()

		err := c.writeBatch(pending, batch)
		pending = nil
		if batch != nil {
			release(batch)
			recycle(batch)
		}
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

// writeInline is a writer run on the publisher's goroutine, for the writer
// count kickLocked took. Most of the time the socket's send buffer has
// room, and an event then costs one system call and no goroutine at all.
// It writes only what the socket takes at once: the first write that would
// block hands the rest, and the count, to a writer goroutine (writeLoop),
// as does a close, whose handshake waits for the peer.
func (c *conn) writeInline() {
	if c.rc == nil {
		go c.writeLoop(nil) // ends when the queue is drained
		return
	}
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			go c.writeLoop(nil) // ends after the close handshake
			return
		}
		if c.q.len() == 0 || c.held {
			c.writing = false
			c.mu.Unlock()
			c.wg.Done()
			return
		}
		batch := c.q.take()
		c.mu.Unlock()

		done, rest, err := c.writeBatchNow(batch)
		if err != nil {
			release(batch)
			recycle(batch)
			c.writeFailed(err)
			c.wg.Done()
			return
		}
		if done < len(batch) || rest != nil {
			c.mu.Lock()
			c.q.requeue(batch[done:])
			c.mu.Unlock()
			release(batch[:done])
			recycle(batch)
			go c.writeLoop(rest) // ends when the queue is drained
			return
		}
		release(batch)
		recycle(batch)
	}
}

// write writes p on the socket in one call, after the 101 response if that
// has not gone out yet: the handshake's answer and the hello then cost one
// system call (writev) instead of two. Only the writer of the moment calls
// it.
func (c *conn) write(p []byte) error {
	if c.upgrade != nil {
		bufs := net.Buffers{c.upgrade, p}
		c.upgrade = nil
		_, err := bufs.WriteTo(c.raw)
		return err
	}
	_, err := c.raw.Write(p)
	return err
}

// writeFailed handles a failed write. A failed write leaves the socket
// unusable: it is closed, and the reader sees that and finishes the
// connection.
func (c *conn) writeFailed(err error) {
	c.raw.Close()
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.code, c.reason = websocket.StatusAbnormalClosure, "write failed"
	}
	c.q.drop()
	c.mu.Unlock()
	// A write that ran out of time is a client not reading: a slow consumer
	// caught by the deadline rather than by the queue's bound, and
	// operators must see it. Any other failure is the peer going away.
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.h.obs.SlowConsumer()
		c.h.log.Warn("write timed out, closed as slow consumer", "ws", c.id.Workspace, "agent", c.id.Agent,
			"timeout", c.h.cfg.WriteTimeout)
	} else {
		c.h.log.Debug("write failed", "ws", c.id.Workspace, "agent", c.id.Agent, "err", err)
	}
}

// nextFrame makes the frame that starts msgs: a prepared event as it is,
// else what pack builds in *buf (taken from framePool on first use).
func nextFrame(buf **[]byte, msgs []outMsg) ([]byte, int) {
	if msgs[0].control || (len(msgs) == 1 && msgs[0].frame != nil) {
		return msgs[0].frame, 1 // the common case: one event (or a hello), prepared
	}
	if *buf == nil {
		*buf = framePool.Get().(*[]byte)
	}
	return pack(**buf, msgs, maxPack)
}

// writeBatchNow writes the frames of msgs for as long as the socket takes
// them without blocking. It reports how many messages went out whole, and
// the unwritten rest of a frame it could write only in part (a copy; the
// messages in that frame count as done).
func (c *conn) writeBatchNow(msgs []outMsg) (done int, rest []byte, err error) {
	var buf *[]byte
	defer func() {
		if buf != nil {
			framePool.Put(buf)
		}
	}()
	for done < len(msgs) {
		if c.dropped.Load() {
			return len(msgs), nil, nil
		}
		frame, n := nextFrame(&buf, msgs[done:])
		// The 101, while it has not gone out, goes in the same call.
		up := c.upgrade
		w, err := c.writevNow(up, frame)
		if err != nil {
			return done, nil, err
		}
		if w == 0 {
			return done, nil, nil
		}
		c.upgrade = nil
		if !msgs[done].control {
			c.h.obs.Sent(n)
		}
		done += n
		if w < len(up) {
			return done, append(bytes.Clone(up[w:]), frame...), nil
		}
		if w -= len(up); w < len(frame) {
			return done, bytes.Clone(frame[w:]), nil
		}
	}
	return done, nil, nil
}

// writeBatch writes pending, then msgs in as few frames as maxPack allows,
// within WriteTimeout; a closing connection that dropped its queue stops
// between frames.
//
// The time limit is a deadline on the TCP connection, set once for the
// batch and cleared after it (the next write may be an inline one, which
// must not find an old deadline). A context with a timeout
// per write would cost a timer, a context and an AfterFunc registration
// for every frame sent, on the hottest path there is.
func (c *conn) writeBatch(pending []byte, msgs []outMsg) error {
	var buf *[]byte
	defer func() {
		if buf != nil {
			framePool.Put(buf)
		}
	}()
	if err := c.raw.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout)); err != nil {
		return err
	}
	defer c.raw.SetWriteDeadline(time.Time{})
	if pending != nil && !c.dropped.Load() {
		if err := c.write(pending); err != nil {
			return err
		}
	}
	for len(msgs) > 0 {
		if c.dropped.Load() {
			return nil
		}
		frame, n := nextFrame(&buf, msgs)
		// One Write call per frame: see frame.go.
		if err := c.write(frame); err != nil {
			return err
		}
		if !msgs[0].control {
			c.h.obs.Sent(n)
		}
		msgs = msgs[n:]
	}
	return nil
}

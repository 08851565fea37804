package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// conn is one accepted WebSocket. Its goroutines:
//
//   - the reader (serve), for the connection's whole life: it reads frames
//     (reader.go) and, when the socket is gone, finishes the connection;
//   - a worker (workers.go), while one request is answered (the reader
//     waits for it, so requests and their store calls go one at a time, in
//     order);
//   - a writer (writeLoop), only while the socket's send buffer is full
//     with more queued, or the socket is being closed (otherwise whoever
//     queues writes inline, without blocking: writeInline);
//   - the ping timer's goroutine (tick), only while it queues a ping.
//
// Writers and pings are counted in wg, and only while finished is false
// (checked under mu), so finish can wait for all of them.
type conn struct {
	h   *Hub
	id  Identity
	raw net.Conn // the hijacked TCP connection, closed to end everything at once
	// upgrade is the 101 response, until the first write sends it ahead of
	// the first frame (normally the hello). Set before the connection is
	// registered; then only the writer of the moment (c.writing) uses it.
	// Both writers send it first, in the same system call as the frame:
	// blocking writes through conn.write, the inline writer through
	// writevNow. The hello is written inline by the goroutine that
	// prepared it, so a connect starts no writer goroutine.
	upgrade []byte
	rc      syscall.RawConn // raw's, for writes that must not block; nil if it has none
	tw      tryWrite        // the inline writer's state (writer.go); the writer's alone

	// A connection has no context of its own. Its requests' contexts
	// descend from the hub's lifetime; its reads, writes and pings are
	// bounded by deadlines and ended by closing the socket. A context per
	// connection would leave its callbacks and child map on every idle
	// connection, for nothing a closed socket does not already do.

	slot int // index in the registry's list of the workspace; guarded by h.reg.mu

	heard   atomic.Int64 // UnixNano of the last bytes received
	dropped atomic.Bool  // closing without sending what is queued

	// The close handshake: whichever of the two sees the other set closes
	// the socket (closeSocket, peerClose).
	closeSent  atomic.Bool // the hub's close frame is written
	peerClosed atomic.Bool // the peer's close frame is read

	wg sync.WaitGroup // writer and ping goroutines; see the type comment

	mu sync.Mutex // guards everything below
	q  sendQueue
	// views are the connection's subscriptions, at most maxViews.
	views []*view
	// floor is hello's seq: every event at or below it is in the snapshot.
	floor uint64
	// held keeps the writer from sending while hello or a subscribe reply
	// is being prepared, so that it can go in before the events it covers.
	held     bool
	writing  bool // a writer goroutine is running (or has closed the socket)
	closing  bool // shut has run: nothing more is queued
	finished bool // finish has run: no goroutine may start
	code     websocket.StatusCode
	reason   string
	pinger   *time.Timer // ping and token expiry
	// closeWait closes the socket if the peer does not answer the hub's
	// close frame in time.
	closeWait *time.Timer

	// Owned by the reader goroutine.
	rd readerState
}

// readerState is what only the reader goroutine touches, and the worker
// answering a request while the reader waits for it (conn.message).
type readerState struct {
	lastActivity time.Time // last Activity reported to presence
	tokens       float64   // request rate limit bucket
	tokensAt     time.Time
	refused      int       // requests refused for the rate limit in the current window
	refusedSince time.Time // start of that window
	bad          int       // bad requests in the current window
	badSince     time.Time // start of that window
	activate     *activation
	frames       readState     // the frame parser's (reader.go)
	tr           tryRead       // readSome's (rawio_*.go)
	answered     chan struct{} // a request's worker signals here (buffered 1); made at the first request
}

// Per-connection request limits (docs/protocol.md, close codes 1008 and
// 4029).
const (
	// maxRefused rate_limited replies within limitWindow close the socket
	// with 4029.
	maxRefused = 100
	// maxBad bad requests (bad_request, unknown_op) within limitWindow close
	// the socket with 1008.
	maxBad      = 20
	limitWindow = 10 * time.Second
	// Activity is reported to presence at most once per activityEvery per
	// connection; the idle timeouts it feeds are minutes long.
	activityEvery = 5 * time.Second
	// reqTimeout bounds one request's store calls. It is below the default
	// PongTimeout so a slow store cannot make a live client look dead.
	reqTimeout = 10 * time.Second
	// maxResume is how many events after since a resume may read.
	maxResume = 10000
	// helloTries is how many times hello reads the snapshot looking for a
	// moment without a commit in the middle (see hello).
	helloTries = 3
	// messagesShown is how many messages the conversation op returns.
	messagesShown = 50
)

func newConn(h *Hub, id Identity) *conn {
	c := &conn{h: h, id: id, held: true}
	c.heard.Store(time.Now().UnixNano())
	return c
}

func (c *conn) heardNow() { c.heard.Store(time.Now().UnixNano()) }

func (c *conn) heardAt() time.Time { return time.Unix(0, c.heard.Load()) }

// start opens the connection's life: it tells presence, sends hello, arms
// the ping timer and starts the reader. It runs on the goroutine of the
// request that opened the socket, which ends right after: hello's reads
// and encoding need a deep stack, and doing them here rather than on the
// reader keeps the reader's stack, which every idle connection holds, at
// its minimum.
func (c *conn) start(since uint64, resume bool) {
	c.h.cfg.Presence.Connect(c.id.Workspace, c.id.Agent)
	c.rd.lastActivity = time.Now()
	c.rd.tokens, c.rd.tokensAt = 2*c.h.cfg.RequestRate, c.rd.lastActivity

	if err := c.hello(since, resume); err != nil {
		c.h.log.Warn("hello failed", "ws", c.id.Workspace, "agent", c.id.Agent, "err", err)
		c.shut(websocket.StatusInternalError, "could not read the workspace; reconnect later", false)
	}
	c.mu.Lock()
	c.pinger = time.AfterFunc(c.nextTick(time.Now()), c.tick)
	c.mu.Unlock()
	go c.serve() // ends when the socket has closed and the connection's goroutines have ended
}

// serve is the reader goroutine. It ends when the socket is closed, by
// either side, after finishing the connection.
func (c *conn) serve() {
	defer c.h.wg.Done()
	err := c.readLoop()
	c.finish(err)
}

// readLoop reads and answers requests until the socket fails or closes,
// or the peer's close frame arrives (returned as a websocket.CloseError).
// After a frame that breaks the protocol it goes on reading, unparsed, so
// that the socket is not reset under the close frame it sends.
func (c *conn) readLoop() error {
	st, limit := &c.rd.frames, c.h.cfg.MaxFrame
	// First the bytes the server read past the upgrade request, if any.
	err := consume(st, nil, limit, c)
	for {
		if err == errPeerClosed {
			c.peerClose(*st.closeRx)
			return *st.closeRx
		}
		if pe := (*protocolError)(nil); errors.As(err, &pe) {
			c.h.log.Debug("protocol error", "ws", c.id.Workspace, "agent", c.id.Agent, "err", pe.reason)
			c.shut(pe.code, pe.reason, false)
		}
		buf, n, rerr := c.readSome()
		if rerr != nil {
			return rerr
		}
		c.heardNow()
		err = consume(st, (*buf)[:n], limit, c)
		readPool.Put(buf)
	}
}

// closingNow implements frameSink.
func (c *conn) closingNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// ping implements frameSink: the pong goes out through the send queue,
// in turn with everything else written to the socket.
func (c *conn) ping(p []byte) {
	c.enqueue(outMsg{frame: controlFrame(opPong, p), control: true})
}

// tooBig implements frameSink.
func (c *conn) tooBig() {
	c.h.obs.Rejected(RejectTooBig)
	c.shut(websocket.StatusMessageTooBig, "frame too big", false)
}

// message implements frameSink: it answers one whole message.
func (c *conn) message(b []byte, binary bool) {
	if binary {
		c.shut(websocket.StatusPolicyViolation, "binary frames are not accepted", true)
		return
	}
	// RFC 6455 8.1: a text frame that is not UTF-8 fails the connection
	// with 1007. Decoding it anyway would turn the bad bytes into U+FFFD
	// and store text the client never sent.
	if !utf8.Valid(b) {
		c.shut(websocket.StatusInvalidFramePayloadData, "text frames must be UTF-8", true)
		return
	}
	// The request is answered on another goroutine (workers.go), and
	// waited for: requests stay one at a time and in order, and the deep
	// stack that decoding, the store and encoding need does not stay with
	// the idle reader. b is in the reader's buffer, which is reused once
	// this returns: the request gets a copy.
	if c.rd.answered == nil {
		c.rd.answered = make(chan struct{}, 1)
	}
	c.h.workers.run(reqJob{c: c, b: bytes.Clone(b)})
	<-c.rd.answered
}

// answer answers one request on a worker and tells the waiting reader.
func (c *conn) answer(b []byte) {
	defer func() { c.rd.answered <- struct{}{} }()
	defer c.survive()
	c.handle(b)
}

// peerClose answers the peer's close frame: the hub's own close frame goes
// out (with the peer's code, unless the hub had begun closing), and the
// socket is closed once both are through.
func (c *conn) peerClose(ce websocket.CloseError) {
	c.peerClosed.Store(true)
	if c.closeSent.Load() {
		c.raw.Close() // the handshake is complete
		return
	}
	c.shut(ce.Code, "closed by client", false)
}

// survive keeps a bug in answering one request from taking the hub and
// every other connection down: the request's connection is closed with
// 1011 instead, and the stack goes to the log.
func (c *conn) survive() {
	if r := recover(); r != nil {
		c.h.log.Error("request panicked", "ws", c.id.Workspace, "agent", c.id.Agent,
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		c.shut(websocket.StatusInternalError, "internal error", true)
	}
}

// finish ends the connection once its reader has stopped: it leaves the
// registry, presence hears of the disconnect (exactly once per
// connection), the socket is closed if it is not already, and the
// connection's other goroutines are awaited.
func (c *conn) finish(readErr error) {
	c.h.reg.remove(c)
	c.h.cfg.Presence.Disconnect(c.id.Workspace, c.id.Agent)
	c.h.obs.ConnClosed()

	c.mu.Lock()
	c.finished = true
	c.q.drop()
	if c.pinger != nil {
		c.pinger.Stop()
	}
	code, reason := c.code, c.reason
	c.mu.Unlock()
	if websocket.CloseStatus(readErr) == -1 {
		// The socket failed or was closed under the reader: whatever is
		// still writing or pinging ends now. After the peer's close frame,
		// the writer sends the hub's and closes the socket.
		c.raw.Close()
	}
	c.wg.Wait()
	c.raw.Close()
	c.mu.Lock()
	if c.closeWait != nil {
		c.closeWait.Stop()
	}
	c.mu.Unlock()

	if code == 0 {
		code = websocket.CloseStatus(readErr)
		switch {
		case code == -1 && (errors.Is(readErr, io.EOF) || errors.Is(readErr, net.ErrClosed)):
			reason = "connection lost"
		case code == -1:
			reason = readErr.Error()
		default:
			reason = "closed by client"
		}
	}
	c.h.log.Debug("connection closed", "ws", c.id.Workspace, "agent", c.id.Agent, "code", int(code), "reason", reason)
}

// nextTick is how long until the timer must next run: the next ping, or the
// token's expiry if that comes first.
func (c *conn) nextTick(now time.Time) time.Duration {
	d := c.h.cfg.PingInterval
	if exp := c.id.Expires; !exp.IsZero() {
		d = min(d, max(exp.Sub(now), 0))
	}
	return d
}

// tick runs on the timer's own goroutine: it closes a connection whose
// token has expired or that has sent nothing for PongTimeout, else queues a
// ping and re-arms the timer. The pong, like any frame, is noted by the
// reader (heard).
func (c *conn) tick() {
	c.mu.Lock()
	if c.finished || c.closing {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	defer c.wg.Done()

	now := time.Now()
	if exp := c.id.Expires; !exp.IsZero() && !now.Before(exp) {
		c.shut(CloseTokenExpired, "token expired", true)
		return
	}
	deadline := c.heardAt().Add(c.h.cfg.PongTimeout)
	if !now.Before(deadline) {
		c.dead()
		return
	}
	c.enqueue(outMsg{frame: pingFrame, control: true})
	c.mu.Lock()
	if !c.finished && !c.closing {
		c.pinger.Reset(min(c.nextTick(now), deadline.Sub(now)))
	}
	c.mu.Unlock()
}

// dead closes a connection that has answered nothing for PongTimeout. There
// is nobody to hear a close frame: the TCP connection is closed at once,
// and the reader finishes the connection, which tells presence.
func (c *conn) dead() {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.code, c.reason = websocket.StatusAbnormalClosure, "no answer to ping"
	}
	c.q.drop()
	c.dropped.Store(true)
	c.mu.Unlock()
	c.h.log.Info("connection closed: no answer to ping", "ws", c.id.Workspace, "agent", c.id.Agent,
		"silent_for", time.Since(c.heardAt()).Round(time.Millisecond).String())
	c.raw.Close()
}

// closeTimeout bounds each half of the close handshake: writing the hub's
// close frame, and waiting for the peer's.
const closeTimeout = 5 * time.Second

// closeSocket sends the close frame; the socket is closed when the peer's
// arrives (peerClose), or after closeTimeout without it. Called by the
// writer, after the last message it sends. After the peer's close frame
// the code is the peer's, echoed without a reason.
func (c *conn) closeSocket(code websocket.StatusCode, reason string) {
	if c.peerClosed.Load() {
		reason = ""
	}
	err := c.raw.SetWriteDeadline(time.Now().Add(closeTimeout))
	if err == nil {
		// One Write call per frame: see frame.go.
		err = c.write(closeFrame(code, reason))
	}
	c.closeSent.Store(true)
	if err != nil || c.peerClosed.Load() {
		c.raw.Close()
		return
	}
	c.mu.Lock()
	if !c.finished { // else finish closes the socket once the writer is done
		c.closeWait = time.AfterFunc(closeTimeout, func() { c.raw.Close() })
	}
	c.mu.Unlock()
}

// hello sends the connection's first message: the workspace as of a
// sequence number, and what a resuming client missed.
//
// Why hello.seq, the snapshot and the live stream agree: the connection is
// registered (so Publish queues its events, held back) before hello reads
// Head. An event above Head is committed after that read, so it is
// published after registration and is in the queue. Head is read before
// the snapshot, so the snapshot reflects at least everything up to it;
// events at or below it are dropped from the queue, now and (through
// c.floor) when their publication comes late. The snapshot is read again
// when a commit landed in the middle; if one still does after helloTries,
// the snapshot may also reflect a few events above seq, which then arrive
// live too: presence, agent and settings events carry whole records, so
// applying them again in order converges on the same state, and a
// notification already listed in hello is dropped from the queue by its
// own sequence number.
func (c *conn) hello(since uint64, resume bool) error {
	b, ws := c.h.cfg.Backend, c.id.Workspace
	msg := helloMsg{
		Type: typeHello,
		V:    protocolVersion,
		helloTail: helloTail{
			Limits: limitsMsg{MaxFrame: c.h.cfg.MaxFrame, PageMax: pageMax},
			Missed: []json.RawMessage{},
		},
	}
	// The roster is read into a scratch buffer, and copied into the hello
	// once the rest of it is known.
	roster := rosterPool.Get().(*[]byte)
	defer func() {
		if cap(*roster) <= maxPooledRoster {
			rosterPool.Put(roster)
		}
	}()
	for try := 1; ; try++ {
		var err error
		msg.Seq = b.Head(ws)
		if msg.Me, err = b.Agent(ws, c.id.Agent); err != nil {
			return err
		}
		if *roster, err = b.AppendAgentsJSON((*roster)[:0], ws); err != nil {
			return err
		}
		if msg.Settings, err = b.Settings(ws); err != nil {
			return err
		}
		if msg.Notifications, err = b.Notifications(ws, c.id.Agent); err != nil {
			return err
		}
		if b.Head(ws) == msg.Seq || try == helloTries {
			break
		}
	}
	msg.Agents = *roster
	msg.Notifications.ByWho = nonNil(msg.Notifications.ByWho)
	msg.Notifications.Items = nonNil(msg.Notifications.Items)
	msg.Channels = c.h.channels(ws, msg.Settings)

	if resume {
		if err := c.missed(&msg, since); err != nil {
			return err
		}
	}
	// Built in a pooled buffer, after room for the frame header, and
	// framed in place: the writer sends it without a copy, and release
	// returns the buffer once it is written.
	buf := helloPool.Get().(*[]byte)
	wire, err := appendHello(append((*buf)[:0], make([]byte, maxFrameHeader)...), &msg)
	if err != nil {
		helloPool.Put(buf)
		return err
	}
	*buf = wire
	hello := outMsg{b: wire[maxFrameHeader:], frame: framed(wire), own: buf}
	shown := make(map[uint64]bool, len(msg.Notifications.Items))
	for _, n := range msg.Notifications.Items {
		shown[n.Seq] = true
	}

	c.mu.Lock()
	c.floor = msg.Seq
	c.q.dropThrough(msg.Seq, shown)
	c.q.pushFront(hello)
	c.held = false
	c.unlockQueued(false)
	return nil
}

// rosterPool holds hello's scratch buffers for the roster. One larger
// than maxPooledRoster (a workspace of thousands of agents) is left to the
// collector rather than kept.
var rosterPool = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledRoster = 256 << 10

// missed fills hello's resume fields: every presence, settings and agent
// event after since up to hello.seq, and the notifications of this agent.
// Conversation events are resumed per view, by subscribe.
func (c *conn) missed(msg *helloMsg, since uint64) error {
	msg.Resumed = true
	if since > msg.Seq {
		// A sequence number this workspace has not reached: the client's
		// state is from elsewhere (a store that was reset).
		msg.Resumed, msg.Resync = false, true
		return nil
	}
	events, complete, err := c.h.cfg.Backend.EventsSince(c.id.Workspace, since, maxResume)
	if err != nil {
		return err
	}
	if !complete {
		msg.Resumed, msg.Resync = false, true
		return nil
	}
	for i := range events {
		ev := &events[i]
		if ev.Seq > msg.Seq {
			break // live from the queue
		}
		switch ev.Kind {
		case queues.EventConversation:
			continue
		case queues.EventNotification:
			if ev.Notification == nil || ev.Notification.Agent != c.id.Agent {
				continue
			}
		}
		msg.Missed = append(msg.Missed, wireOf(ev))
	}
	return nil
}

// activation is a subscribe waiting for its reply to be queued: the view
// becomes active, with its floor, in the same critical section that places
// the reply (see conn.subscribe).
type activation struct {
	view  *view
	floor uint64
}

// handle answers one request frame. Every request gets exactly one reply.
func (c *conn) handle(frame []byte) {
	now := time.Now()
	if !c.allow(now) || !c.h.allowAgent(c.id, now) {
		_, id, _ := decodeRequest(frame)
		c.h.obs.Rejected(RejectRateLimited)
		c.reply(id, nil, &replyError{Code: codeRateLimited, Message: "too many requests; slow down"})
		if countInWindow(&c.rd.refused, &c.rd.refusedSince, now) >= maxRefused {
			c.shut(CloseRateLimited, "rate limited", true)
		}
		return
	}

	req, id, rerr := decodeRequest(frame)
	if rerr != nil {
		c.reply(id, nil, rerr)
		c.badRequest(now)
		return
	}
	op, ok := operations[req.Op]
	if !ok {
		c.reply(id, nil, &replyError{Code: codeUnknownOp, Message: "no operation " + quoteShort(req.Op)})
		c.badRequest(now)
		return
	}
	if !op.notActivity && now.Sub(c.rd.lastActivity) >= activityEvery {
		c.rd.lastActivity = now
		c.h.cfg.Presence.Activity(c.id.Workspace, c.id.Agent)
	}
	if op.admin && c.id.Role != queues.RoleAdmin {
		c.h.obs.Rejected(RejectRole)
		c.reply(id, nil, &replyError{Code: codeForbidden, Message: req.Op + " is for admins"})
		return
	}
	// The bound starts now, not when the frame arrived: reporting activity
	// above may have waited on a busy presence tracker.
	result, err := op.fn(c, c.h.deadlines.get(time.Now()), req)
	if err != nil {
		re, clientFault := errorFor(err)
		if !clientFault {
			c.h.log.Warn("request failed", "ws", c.id.Workspace, "agent", c.id.Agent, "op", req.Op, "err", err)
		}
		if re.Code == codeForbidden {
			c.h.obs.Rejected(RejectRole)
		}
		c.reply(id, nil, re)
		return
	}
	if d := c.h.cfg.Delivery; d != nil {
		if n := resultSeq(result); n > 0 && !d.WaitDelivered(c.id.Workspace, n, reqTimeout) {
			c.h.log.Warn("reply sent before its events: fan-out is behind", "ws", c.id.Workspace, "op", req.Op, "seq", n)
		}
	}
	c.reply(id, result, nil)
	if op.after != nil {
		op.after(c, req)
	}
}

// requestDeadlines hands out the contexts that bound requests' store calls
// (reqTimeout). Requests that start within the same deadlineStep share one
// context, which ends between reqTimeout and reqTimeout+deadlineStep after
// each of them started. That is one timer a second for the whole hub, where
// a context.WithTimeout per request cost a timer set and stopped, and 4 %
// of the bytes a durable run allocated.
type requestDeadlines struct {
	parent context.Context

	mu       sync.Mutex
	ctx      context.Context // guarded by mu
	deadline time.Time       // guarded by mu: ctx's
	// cancel is ctx's, held only so it is not discarded (go vet's
	// lostcancel): ctx ends by itself at its deadline, or with parent.
	cancel context.CancelFunc // guarded by mu
}

// deadlineStep is how long one request context is handed out.
const deadlineStep = time.Second

// get returns a context that ends no sooner than reqTimeout after now.
func (d *requestDeadlines) get(now time.Time) context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ctx == nil || d.deadline.Sub(now) < reqTimeout {
		// The context being replaced is not cancelled: requests that
		// took it are still running. It ends at its deadline.
		d.deadline = now.Add(reqTimeout + deadlineStep)
		d.ctx, d.cancel = context.WithDeadline(d.parent, d.deadline)
	}
	return d.ctx
}

// allow takes one token from the connection's request bucket: it holds
// twice Config.RequestRate and refills at the rate.
func (c *conn) allow(now time.Time) bool {
	rate := c.h.cfg.RequestRate
	if rate < 0 {
		return true
	}
	c.rd.tokens = min(2*rate, c.rd.tokens+now.Sub(c.rd.tokensAt).Seconds()*rate)
	c.rd.tokensAt = now
	if c.rd.tokens < 1 {
		return false
	}
	c.rd.tokens--
	return true
}

// allowAgent takes one token from the agent's bucket, shared by its sockets.
func (h *Hub) allowAgent(id Identity, now time.Time) bool {
	if h.agentLimits == nil {
		return true
	}
	ok, _ := h.agentLimits.take(limitKey{ws: id.Workspace, sub: id.Agent}, now)
	return ok
}

// agentLimiter is the budget an agent's sockets share: twice a single
// connection's, so a few tabs fit, while neither extra sockets nor
// reconnects get around the per-connection bucket. Nil when rate is
// negative (no limits).
func agentLimiter(rate float64) *limiter {
	if rate < 0 {
		return nil
	}
	return newLimiter(2 * rate)
}

// badRequest counts a malformed request; a flood of them closes the socket
// with 1008.
func (c *conn) badRequest(now time.Time) {
	if countInWindow(&c.rd.bad, &c.rd.badSince, now) >= maxBad {
		c.shut(websocket.StatusPolicyViolation, "too many bad requests", true)
	}
}

// countInWindow counts one more occurrence in a window of limitWindow that
// starts with the first occurrence, and returns the window's count.
func countInWindow(n *int, since *time.Time, now time.Time) int {
	if now.Sub(*since) > limitWindow {
		*n, *since = 0, now
	}
	*n++
	return *n
}

// reply queues the answer to a request. A subscribe's reply also activates
// its view, in the same critical section.
func (c *conn) reply(id json.RawMessage, result any, rerr *replyError) {
	msg := replyMsg{Type: typeReply, ID: id, OK: rerr == nil, Result: result, Error: rerr}
	if rerr == nil && result == nil {
		msg.Result = emptyResult{}
	}
	var b []byte
	var err error
	if cr, ok := result.(convResult); ok && rerr == nil && plainID(id) && c.rd.activate == nil {
		// The answer to every conversation change: by hand, in a pooled
		// buffer framed in place, as hello is.
		buf := replyPool.Get().(*[]byte)
		wire := appendConvReply(append((*buf)[:0], make([]byte, maxFrameHeader)...), id, &cr)
		*buf = wire
		c.enqueue(outMsg{b: wire[maxFrameHeader:], frame: framed(wire), own: buf})
		return
	} else if p, ok := result.(subscribePage); ok && rerr == nil && plainID(id) {
		// And to every connect's subscribe.
		b = appendPageReply(nil, id, &p)
	} else {
		b, err = json.Marshal(&msg)
	}
	if err != nil {
		c.h.log.Error("encode reply", "ws", c.id.Workspace, "agent", c.id.Agent, "err", err)
		b, _ = json.Marshal(&replyMsg{Type: typeReply, ID: id, Error: &replyError{Code: codeInternal, Message: "could not encode the result"}})
		if act := c.rd.activate; act != nil {
			c.rd.activate = nil
			c.dropView(act.view)
		}
	}
	if act := c.rd.activate; act != nil {
		c.rd.activate = nil
		c.activate(act, b)
		return
	}
	c.enqueue(outMsg{b: b})
}

// activate makes a subscribed view live and queues its reply before every
// event the reply does not cover.
func (c *conn) activate(act *activation, reply []byte) {
	c.mu.Lock()
	if c.closing || c.finished {
		c.mu.Unlock()
		return
	}
	act.view.floor = act.floor
	act.view.pending = false
	c.q.place(outMsg{b: reply}, act.floor)
	c.held = false
	c.unlockQueued(false)
}

// dropView removes a view whose subscribe failed, and what was queued for
// it alone.
func (c *conn) dropView(v *view) {
	c.mu.Lock()
	c.views = slices.DeleteFunc(c.views, func(x *view) bool { return x == v })
	c.q.dropViewOnly()
	c.held = false
	c.unlockQueued(false)
}

// quoteShort quotes a client-supplied string for an error message, cut to
// a sane length.
func quoteShort(s string) string {
	const max = 40
	if len(s) > max {
		s = s[:max] + "..."
	}
	b, _ := json.Marshal(s)
	return string(b)
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// The load of the crash and shutdown tests: real clients over loopback that
// keep a ledger of every change the hub acknowledged, so that after a crash
// and a restart the test can tell, change by change, whether the hub kept
// its word.
//
// How the ledger stays checkable: agent i alone changes its conversations
// ("a<i>-<j>"), one request at a time, and the service client alone writes
// to its conversations ("in<k>"). So each conversation's state and history
// follow from its writer's acknowledged requests, plus at most one request
// whose answer never came (sent before a kill): its outcome is resolved by
// reading the conversation after reconnecting (its version is either the
// last acknowledged one, or one more with exactly that request's effect).

// loadConfig sizes the load.
type loadConfig struct {
	ws           string
	agents       int // WebSocket agents; agent i alone changes its convsPer conversations
	convsPer     int
	churners     int // agents that only connect, leave and log out: presence churn
	inboundConvs int // conversations only the service client writes to
	inboundEvery time.Duration
	opPause      [2]time.Duration // an agent's pause between two requests: min, max
	session      [2]time.Duration // how long an agent keeps a socket before closing it
	away         [2]time.Duration // how long it stays away before reconnecting
}

// Operation kinds, for the counts.
const (
	kindAssign   = "assign"
	kindUnassign = "unassign"
	kindMove     = "move"
	kindReply    = "reply"
	kindInbound  = "inbound"
)

var opKinds = []string{kindAssign, kindUnassign, kindMove, kindReply, kindInbound}

// viewDef is a subscription: a queue and a filter.
type viewDef struct {
	queue  queues.Queue
	filter map[string]any
}

func (v viewDef) String() string {
	b, _ := json.Marshal(v.filter)
	return string(v.queue) + " " + string(b)
}

// loadViews are given to the agents in turn, so every filter kind is
// resumed by someone.
var loadViews = []viewDef{
	{queues.QueueNew, map[string]any{"kind": "all"}},
	{queues.QueuePending, map[string]any{"kind": "all"}},
	{queues.QueueNew, map[string]any{"kind": "mine"}},
	{queues.QueueNew, map[string]any{"kind": "unowned"}},
	{queues.QueuePending, map[string]any{"kind": "others"}},
	{queues.QueueNew, map[string]any{"kind": "agents", "agents": []string{"la0", "la1", "la2"}}},
}

// loadStats are the figures of a run.
type loadStats struct {
	acked              map[string]*atomic.Int64
	uncertainCommitted atomic.Int64 // requests without an answer that had committed
	uncertainNot       atomic.Int64 // ... that had not
	losses             atomic.Int64 // acknowledged changes missing after a restart
	duplicates         atomic.Int64 // a message id applied twice, a history entry twice
	retriedNoop        atomic.Int64 // re-sent message ids that changed nothing, as they must
	reconnects         atomic.Int64 // agent sockets opened after the first
	resumedEvents      atomic.Int64 // view events that came in a resumed subscribe
	missedEvents       atomic.Int64 // workspace events that came in hello.missed
	churnConnects      atomic.Int64
	logouts            atomic.Int64
	goingAway          atomic.Int64 // sockets the hub closed with 1001
}

func newLoadStats() *loadStats {
	s := &loadStats{acked: map[string]*atomic.Int64{}}
	for _, k := range opKinds {
		s.acked[k] = new(atomic.Int64)
	}
	return s
}

func (s *loadStats) ackedTotal() int64 {
	var n int64
	for _, k := range opKinds {
		n += s.acked[k].Load()
	}
	return n
}

func (s *loadStats) ackedString() string {
	var parts []string
	for _, k := range opKinds {
		parts = append(parts, fmt.Sprintf("%s %d", k, s.acked[k].Load()))
	}
	return strings.Join(parts, ", ")
}

// load runs the clients.
type load struct {
	t     *testing.T
	cfg   loadConfig
	base  string
	hc    *http.Client // WebSocket dials
	api   *api
	probs *problems
	stats *loadStats

	// epoch counts the hub's restarts; an agent notes the epoch in which it
	// last verified its conversations.
	epoch    atomic.Int64
	ready    chan struct{} // closed once every agent exists: they assign to each other
	stopping chan struct{} // closed to ask the clients to finish
	stopOnce sync.Once
	wg       sync.WaitGroup

	agents   []*loadAgent
	churners []string
	churnTok map[string]string
	svc      *inboundClient
}

func newLoad(t *testing.T, base string, cfg loadConfig, seed uint64) *load {
	l := &load{t: t, cfg: cfg, base: base, hc: &http.Client{Transport: newTransport(t)},
		api: newAPI(t, base), probs: &problems{}, stats: newLoadStats(),
		ready: make(chan struct{}), stopping: make(chan struct{})}
	var targets []string
	for i := range cfg.agents {
		targets = append(targets, "la"+strconv.Itoa(i))
	}
	l.churnTok = map[string]string{}
	for i := range cfg.churners {
		id := "lc" + strconv.Itoa(i)
		l.churners = append(l.churners, id)
		l.churnTok[id] = mintFor(t, cfg.ws, id, queues.RoleAgent)
	}
	targets = append(targets, l.churners...)
	for i := range cfg.agents {
		a := &loadAgent{l: l, id: "la" + strconv.Itoa(i), view: loadViews[i%len(loadViews)],
			targets: targets, rng: rand.New(rand.NewPCG(seed, uint64(i)+1))}
		a.token = mintFor(t, cfg.ws, a.id, queues.RoleAgent)
		for j := range cfg.convsPer {
			a.convs = append(a.convs, &convLedger{id: fmt.Sprintf("a%d-%d", i, j)})
		}
		l.agents = append(l.agents, a)
	}
	l.svc = &inboundClient{l: l, token: mintFor(t, cfg.ws, "helpdesk", queues.RoleService)}
	for k := range cfg.inboundConvs {
		l.svc.convs = append(l.svc.convs, &inboundLedger{id: "in" + strconv.Itoa(k)})
	}
	return l
}

// setup creates every conversation with its first inbound message.
func (l *load) setup(t *testing.T) {
	t.Helper()
	create := func(id, msg string) inboundAnswer {
		var ans inboundAnswer
		l.api.must(t, http.MethodPost, "/api/v1/conversations/"+id+"/inbound", l.svc.token,
			map[string]any{"message_id": msg, "channel": "email", "customer": "Customer " + id, "text": "hello " + id}, &ans)
		return ans
	}
	for _, a := range l.agents {
		for _, cl := range a.convs {
			ans := create(cl.id, cl.id+"-first")
			cl.ver, cl.queue = ans.Conversation.Version, ans.Conversation.Queue
			cl.history = []string{histKey(queues.AuditQueue, "", "new", queues.ReasonCreated)}
			cl.messages = []string{cl.id + "-first"}
		}
	}
	for _, cl := range l.svc.convs {
		ans := create(cl.id, cl.id+"-m0")
		cl.ver, cl.acked = ans.Conversation.Version, []string{cl.id + "-m0"}
	}
}

// start runs every client until stop (or ctx). It returns once every
// agent and churner has connected once, so all of them exist.
func (l *load) start(t *testing.T, ctx context.Context) {
	t.Helper()
	var joined sync.WaitGroup
	for _, a := range l.agents {
		joined.Add(1)
		l.wg.Add(1)
		go a.run(ctx, joined.Done) // ends at stop, once settled, or with ctx
	}
	for i, id := range l.churners {
		joined.Add(1)
		l.wg.Add(1)
		go l.churn(ctx, id, rand.New(rand.NewPCG(uint64(i), 99)), joined.Done) // ends at stop or with ctx
	}
	all := make(chan struct{})
	go func() { joined.Wait(); close(all) }() // ends when every client has joined once
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		l.probs.report(t)
		t.Fatal("the clients did not all connect within 30s")
	}
	close(l.ready)
	l.wg.Add(1)
	go l.svc.run(ctx) // ends at stop or with ctx
}

// stop asks the clients to finish (each resolves what it has in flight
// first) and waits for them, up to limit.
func (l *load) stop(limit time.Duration) bool {
	l.stopOnce.Do(func() { close(l.stopping) })
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }() // ends when every client has ended
	select {
	case <-done:
		return true
	case <-time.After(limit):
		return false
	}
}

func (l *load) isStopping() bool {
	select {
	case <-l.stopping:
		return true
	default:
		return false
	}
}

// waitVerified waits until every agent has read its conversations back in
// epoch e (after the e-th restart).
func (l *load) waitVerified(e int64, limit time.Duration) []string {
	var late []string
	pollUntil(limit, 50*time.Millisecond, func() bool {
		late = late[:0]
		for _, a := range l.agents {
			if a.verified.Load() < e {
				late = append(late, a.id)
			}
		}
		return len(late) == 0
	})
	return late
}

// pause sleeps d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

func between(rng *rand.Rand, r [2]time.Duration) time.Duration {
	if r[1] <= r[0] {
		return r[0]
	}
	return r[0] + time.Duration(rng.Int64N(int64(r[1]-r[0])))
}

// histKey is an audit entry as the ledger compares it.
func histKey(kind, from, to string, why queues.Reason) string {
	return kind + ":" + from + ">" + to + ":" + string(why)
}

// ---- one agent's conversations ----

// ledgerOp is one change an agent asks for.
type ledgerOp struct {
	kind  string
	agent string       // assign
	queue queues.Queue // move
	msgID string       // reply
}

func (op ledgerOp) String() string {
	switch op.kind {
	case kindAssign:
		return "assign " + op.agent
	case kindMove:
		return "move " + string(op.queue)
	case kindReply:
		return "reply " + op.msgID
	}
	return op.kind
}

// convLedger is what an agent knows of one of its conversations: the state
// after the last change that committed, the history and messages that
// state implies, and the request in flight whose outcome is unknown.
type convLedger struct {
	id       string
	ver      uint64
	queue    queues.Queue
	owner    string
	history  []string // histKey of every expected audit entry, in order
	messages []string // message ids, in order
	pending  *ledgerOp
	tainted  bool // the ledger lost track (already reported): skip the exact checks
}

// after is the state op leads to and the audit entries it writes
// (queues/rules.go: a move writes its queue entry, then resolving writes
// the owner's removal).
func (cl *convLedger) after(op ledgerOp) (q queues.Queue, owner string, hist []string) {
	q, owner = cl.queue, cl.owner
	switch op.kind {
	case kindAssign:
		owner = op.agent
		hist = append(hist, histKey(queues.AuditOwner, cl.owner, op.agent, queues.ReasonManualAssign))
	case kindUnassign:
		owner = ""
		hist = append(hist, histKey(queues.AuditOwner, cl.owner, "", queues.ReasonManualUnassign))
	case kindMove:
		q = op.queue
		hist = append(hist, histKey(queues.AuditQueue, string(cl.queue), string(op.queue), queues.ReasonMove))
		if op.queue == queues.QueueResolved && cl.owner != "" {
			owner = ""
			hist = append(hist, histKey(queues.AuditOwner, cl.owner, "", queues.ReasonResolved))
		}
	}
	return q, owner, hist
}

func (cl *convLedger) commit(op ledgerOp, ver uint64) {
	q, owner, hist := cl.after(op)
	cl.ver, cl.queue, cl.owner = ver, q, owner
	cl.history = append(cl.history, hist...)
	if op.kind == kindReply {
		cl.messages = append(cl.messages, op.msgID)
	}
	cl.pending = nil
}

func (cl *convLedger) adopt(c queues.Conversation) {
	cl.ver, cl.queue, cl.owner, cl.tainted, cl.pending = c.Version, c.Queue, c.Owner, true, nil
}

// coverage is what an agent's sockets delivered, for the resume check.
type coverage struct {
	mu sync.Mutex
	// wsFloor is the first hello's seq: workspace events above it must all
	// arrive (live or in hello.missed). viewFloor is the first subscribe's
	// seq: the view's conversation events above it must all arrive (live or
	// in a resumed subscribe).
	wsFloor, viewFloor uint64
	started, haveView  bool
	// As protocol.md's Resuming says, the client keeps the highest seq it
	// has seen, from hello, replies with a seq and events: wsSeq, the next
	// ?since=. viewSince is the same counted only while the view is
	// subscribed, the next subscribe's since: a socket that dies between
	// hello and its subscribe must not move it. viewApplied is the view's
	// seq for applying events (protocol.md, Events): the subscribe reply's,
	// then the last event applied.
	wsSeq, viewSince, viewApplied uint64
	viewActive                    bool   // on the current socket
	connLast                      uint64 // last event seq on the current socket
	connReply                     uint64 // highest reply seq on the current socket
	// inversions counts events that came after a reply with a higher seq
	// on the same socket: a client that resumed from that reply's seq, as
	// protocol.md says to, would never get them.
	inversions int
	firstInv   string
	conv       map[uint64]string
	other      map[string]bool // "e<seq>" for presence, agent and settings events; "n<id>" for notifications
	dupView    int
	staleView  int
	outOfOrder int
	noView     int
	resyncs    int
}

func otherKey(m *wsMsg) string {
	if m.Kind == string(queues.EventNotification) && m.Notification != nil {
		return "n" + strconv.FormatUint(m.Notification.Seq, 10)
	}
	return "e" + strconv.FormatUint(m.Seq, 10)
}

func convKey(m *wsMsg) string {
	if m.Conv == nil {
		return "?"
	}
	return m.Conv.ID + "@" + strconv.FormatUint(m.Conv.Version, 10)
}

// recordView notes one of the view's conversation events. Caller holds mu.
func (cv *coverage) recordView(m *wsMsg) {
	if _, dup := cv.conv[m.Seq]; dup {
		cv.dupView++
		return
	}
	cv.conv[m.Seq] = convKey(m)
	cv.viewApplied = max(cv.viewApplied, m.Seq)
	cv.viewSince = max(cv.viewSince, m.Seq)
}

// loadAgent is one WebSocket agent of the load.
type loadAgent struct {
	l       *load
	id      string
	token   string
	view    viewDef
	targets []string
	rng     *rand.Rand // owned by run's goroutine
	convs   []*convLedger
	replies int
	// lastReply is the last acknowledged reply, re-sent after a restart:
	// the same message id must change nothing.
	lastReply    *ledgerOp
	lastReplyCv  *convLedger
	retriedEpoch int64
	verified     atomic.Int64
	cov          coverage
}

func (a *loadAgent) run(ctx context.Context, joined func()) {
	defer a.l.wg.Done()
	a.cov.conv, a.cov.other = map[uint64]string{}, map[string]bool{}
	a.verified.Store(-1)
	first := true
	for ctx.Err() == nil {
		if a.l.isStopping() && a.settled() {
			// One last resume: what the last socket had not received yet
			// is replayed, so the coverage check can hold the client to
			// every event up to its last seq.
			for ctx.Err() == nil && !a.session(ctx, func() {}, true) {
				pause(ctx, 50*time.Millisecond)
			}
			return
		}
		ok := a.session(ctx, func() {
			if first {
				first = false
				joined()
			}
		}, false)
		// Away a moment before reconnecting, so that the resume has
		// something to replay.
		away := time.Duration(20+a.rng.IntN(80)) * time.Millisecond
		if ok && !a.l.isStopping() {
			away = between(a.rng, a.l.cfg.away)
		}
		pause(ctx, away)
	}
	if first {
		joined()
	}
}

// settled: nothing in flight, and the conversations were verified since
// the last restart.
func (a *loadAgent) settled() bool {
	for _, cl := range a.convs {
		if cl.pending != nil {
			return false
		}
	}
	return a.verified.Load() >= a.l.epoch.Load()
}

func (a *loadAgent) onMsg(m *wsMsg) {
	cv := &a.cov
	cv.mu.Lock()
	defer cv.mu.Unlock()
	switch m.Type {
	case "hello":
		if !cv.started {
			cv.started, cv.wsFloor = true, m.Seq
		} else {
			if m.Resync {
				cv.resyncs++
				a.l.probs.add("resume refused (hello.resync)", "%s: since %d, hello seq %d", a.id, cv.wsSeq, m.Seq)
			}
			for _, raw := range m.Missed {
				var ev wsMsg
				if err := json.Unmarshal(raw, &ev); err != nil {
					a.l.probs.add("bad hello.missed", "%s: %v", a.id, err)
					continue
				}
				cv.other[otherKey(&ev)] = true
				a.l.stats.missedEvents.Add(1)
			}
		}
		if m.Notifications != nil {
			for _, n := range m.Notifications.Items {
				cv.other["n"+strconv.FormatUint(n.Seq, 10)] = true
			}
		}
		cv.wsSeq = max(cv.wsSeq, m.Seq)
		cv.viewActive, cv.connLast, cv.connReply = false, m.Seq, 0
	case "event":
		if m.Seq <= cv.connLast {
			cv.outOfOrder++
		}
		if m.Seq < cv.connReply {
			if cv.inversions == 0 {
				cv.firstInv = fmt.Sprintf("%s event seq %d after a reply with seq %d", m.Kind, m.Seq, cv.connReply)
			}
			cv.inversions++
		}
		cv.connLast = m.Seq
		cv.wsSeq = max(cv.wsSeq, m.Seq)
		if m.Kind != string(queues.EventConversation) {
			cv.other[otherKey(m)] = true
			return
		}
		switch {
		case !cv.viewActive:
			cv.noView++
		case m.Seq <= cv.viewApplied:
			cv.staleView++
		default:
			cv.recordView(m)
		}
	}
}

// seqHook notes the seq of a change's reply: protocol.md's Resuming counts
// it in the highest seq seen. It does not move the view's seq for applying
// events: only the subscribe reply and applied events do (protocol.md,
// Events).
func (a *loadAgent) seqHook(m *wsMsg) {
	var r struct {
		Seq uint64 `json:"seq"`
	}
	if !m.OK || json.Unmarshal(m.Result, &r) != nil || r.Seq == 0 {
		return
	}
	a.cov.mu.Lock()
	a.cov.wsSeq = max(a.cov.wsSeq, r.Seq)
	a.cov.connReply = max(a.cov.connReply, r.Seq)
	if a.cov.viewActive {
		a.cov.viewSince = max(a.cov.viewSince, r.Seq)
	}
	a.cov.mu.Unlock()
}

// subscribeHook settles the subscribe's reply on the reader, before the
// events that follow it.
func (a *loadAgent) subscribeHook(m *wsMsg) {
	cv := &a.cov
	cv.mu.Lock()
	defer cv.mu.Unlock()
	var r subscribeResult
	if !m.OK || json.Unmarshal(m.Result, &r) != nil {
		return
	}
	switch {
	case !cv.haveView:
		cv.haveView, cv.viewFloor = true, r.Seq
	case r.Resumed:
		for _, raw := range r.Events {
			var ev wsMsg
			if err := json.Unmarshal(raw, &ev); err != nil {
				a.l.probs.add("bad resumed event", "%s: %v", a.id, err)
				continue
			}
			if ev.Seq <= cv.viewApplied {
				cv.staleView++
				continue
			}
			cv.recordView(&ev)
			a.l.stats.resumedEvents.Add(1)
		}
	default:
		cv.resyncs++
		a.l.probs.add("resume refused (subscribe resync)", "%s: since %d, reply seq %d", a.id, cv.viewSince, r.Seq)
	}
	cv.viewApplied = max(cv.viewApplied, r.Seq)
	cv.viewSince = max(cv.viewSince, r.Seq)
	cv.wsSeq = max(cv.wsSeq, r.Seq)
	cv.viewActive = true
}

// session is one socket: connect (resuming), verify every conversation,
// re-send the last reply after a restart, then change things until the
// session's time is up. A final session only resumes. It returns false
// when it could not connect.
func (a *loadAgent) session(ctx context.Context, connected func(), final bool) bool {
	l := a.l
	e := l.epoch.Load()
	a.cov.mu.Lock()
	var since *uint64
	if a.cov.started {
		s := a.cov.wsSeq
		since = &s
	}
	viewSince := a.cov.viewSince
	haveView := a.cov.haveView
	a.cov.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, _, err := dialWS(dctx, l.hc, l.base, a.token, since, a.onMsg)
	cancel()
	if err != nil {
		return false
	}
	if since != nil {
		l.stats.reconnects.Add(1)
	}
	polite := false
	defer func() {
		if polite {
			conn.close()
		} else {
			conn.drop()
		}
		if conn.closeCode() == 1001 {
			l.stats.goingAway.Add(1)
		}
	}()

	sub := map[string]any{"op": "subscribe", "view": "v", "queue": a.view.queue, "filter": a.view.filter, "limit": 50}
	if haveView {
		sub["since"] = viewSince
	}
	r, err := conn.do(ctx, sub, a.subscribeHook)
	if err != nil {
		return true
	}
	if !r.OK {
		l.probs.add("subscribe refused", "%s: %s", a.id, r.code())
		return true
	}
	connected()
	if final {
		polite = true
		return true
	}

	for _, cl := range a.convs {
		if err := a.resolve(ctx, conn, cl); err != nil {
			return true
		}
	}
	if e > a.retriedEpoch && a.lastReply != nil {
		if err := a.retryReply(ctx, conn); err != nil {
			return true
		}
		a.retriedEpoch = e
	}
	a.verified.Store(e)

	select {
	case <-l.ready:
	case <-ctx.Done():
		return true
	}
	end := time.Now().Add(between(a.rng, l.cfg.session))
	for time.Now().Before(end) {
		if l.isStopping() || !pause(ctx, between(a.rng, l.cfg.opPause)) {
			polite = true
			return true
		}
		cl := a.convs[a.rng.IntN(len(a.convs))]
		if err := a.change(ctx, conn, cl, a.pick(cl)); err != nil {
			return true
		}
	}
	polite = true
	return true
}

// pick chooses a change that changes something.
func (a *loadAgent) pick(cl *convLedger) ledgerOp {
	if cl.queue == queues.QueueResolved {
		return ledgerOp{kind: kindMove, queue: []queues.Queue{queues.QueueNew, queues.QueuePending}[a.rng.IntN(2)]}
	}
	switch r := a.rng.IntN(100); {
	case r < 30 || (r < 45 && cl.owner == ""):
		for {
			if to := a.targets[a.rng.IntN(len(a.targets))]; to != cl.owner {
				return ledgerOp{kind: kindAssign, agent: to}
			}
		}
	case r < 45:
		return ledgerOp{kind: kindUnassign}
	case r < 78:
		qs := []queues.Queue{queues.QueueNew, queues.QueuePending, queues.QueueResolved}
		qs = slices.DeleteFunc(qs, func(q queues.Queue) bool { return q == cl.queue })
		if a.rng.IntN(100) < 70 {
			return ledgerOp{kind: kindMove, queue: qs[0]}
		}
		return ledgerOp{kind: kindMove, queue: qs[len(qs)-1]}
	}
	a.replies++
	return ledgerOp{kind: kindReply, msgID: fmt.Sprintf("%s-r%d", a.id, a.replies)}
}

func request(cl *convLedger, op ledgerOp) map[string]any {
	req := map[string]any{"op": op.kind, "conv": cl.id}
	switch op.kind {
	case kindAssign:
		req["agent"], req["version"] = op.agent, cl.ver
	case kindUnassign:
		req["version"] = cl.ver
	case kindMove:
		req["queue"], req["version"] = op.queue, cl.ver
	case kindReply:
		req["message_id"], req["text"] = op.msgID, "answer "+op.msgID
	}
	return req
}

// change sends one change and settles the ledger with its answer. An error
// means the socket is gone: the change stays pending until resolved.
func (a *loadAgent) change(ctx context.Context, conn *wsConn, cl *convLedger, op ledgerOp) error {
	l := a.l
	cl.pending = &op
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	r, err := conn.do(rctx, request(cl, op), a.seqHook)
	cancel()
	if errors.Is(err, errNotSent) {
		cl.pending = nil
	}
	if err != nil {
		return err
	}
	if r.OK {
		var res convResult
		if err := json.Unmarshal(r.Result, &res); err != nil {
			l.probs.add("bad reply", "%s %s: %v", cl.id, op, err)
			return err
		}
		q, owner, _ := cl.after(op)
		if res.Conv.Version != cl.ver+1 {
			l.probs.add("acknowledged version is not the next one", "%s %s: got version %d, want %d", cl.id, op, res.Conv.Version, cl.ver+1)
		}
		if res.Conv.Queue != q || res.Conv.Owner != owner {
			l.probs.add("acknowledged state is not the change", "%s %s: got %s/%q, want %s/%q", cl.id, op, res.Conv.Queue, res.Conv.Owner, q, owner)
		}
		cl.commit(op, res.Conv.Version)
		l.stats.acked[op.kind].Add(1)
		if op.kind == kindReply {
			a.lastReply, a.lastReplyCv = &op, cl
		}
		return nil
	}
	switch r.code() {
	case "rate_limited":
		cl.pending = nil // refused before it ran
		return nil
	case "unavailable", "internal":
		// The store may have committed it after all: read it back.
		return a.resolve(ctx, conn, cl)
	case "conflict":
		cl.pending = nil // refused: the version did not match
		l.probs.add("unexpected conflict (someone else changed a conversation only its agent changes)", "%s %s at version %d: %s", cl.id, op, cl.ver, r.Error.Message)
		return a.resolve(ctx, conn, cl)
	}
	l.probs.add("change refused", "%s %s: %s %s", cl.id, op, r.code(), r.Error.Message)
	cl.pending = nil
	return nil
}

// resolve reads a conversation back and checks it against the ledger:
// every acknowledged change must be there, and a change in flight either
// committed (exactly once, with exactly its effect) or did not.
func (a *loadAgent) resolve(ctx context.Context, conn *wsConn, cl *convLedger) error {
	l := a.l
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	r, err := conn.do(rctx, map[string]any{"op": "conversation", "conv": cl.id}, nil)
	cancel()
	if err != nil {
		return err
	}
	if !r.OK {
		if r.code() == "rate_limited" || r.code() == "unavailable" {
			return errors.New(r.code())
		}
		l.probs.add("conversation refused", "%s: %s", cl.id, r.code())
		return errors.New(r.code())
	}
	var res conversationResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return err
	}
	cur := res.Conv
	switch {
	case cur.Version < cl.ver:
		l.stats.losses.Add(1)
		l.probs.add("LOSS: an acknowledged change is gone after the restart", "%s: version %d %s/%q, acknowledged version %d %s/%q",
			cl.id, cur.Version, cur.Queue, cur.Owner, cl.ver, cl.queue, cl.owner)
		cl.adopt(cur)
	case cur.Version == cl.ver:
		if cur.Queue != cl.queue || cur.Owner != cl.owner {
			l.stats.losses.Add(1)
			l.probs.add("LOSS: state differs from the acknowledged one at the same version", "%s v%d: got %s/%q, want %s/%q",
				cl.id, cur.Version, cur.Queue, cur.Owner, cl.queue, cl.owner)
			cl.adopt(cur)
		}
		if cl.pending != nil {
			l.stats.uncertainNot.Add(1)
			cl.pending = nil
		}
	case cur.Version == cl.ver+1 && cl.pending != nil:
		q, owner, _ := cl.after(*cl.pending)
		ok := cur.Queue == q && cur.Owner == owner
		if cl.pending.kind == kindReply {
			ok = ok && slices.ContainsFunc(res.Messages, func(m queues.Message) bool { return m.ID == cl.pending.msgID })
		}
		if !ok {
			l.probs.add("the change in flight left another state", "%s %s: got v%d %s/%q, want %s/%q",
				cl.id, cl.pending, cur.Version, cur.Queue, cur.Owner, q, owner)
			cl.adopt(cur)
			break
		}
		l.stats.uncertainCommitted.Add(1)
		cl.commit(*cl.pending, cur.Version)
	default:
		l.probs.add("unexplained change", "%s: version %d, ledger version %d, in flight %v", cl.id, cur.Version, cl.ver, cl.pending)
		cl.adopt(cur)
	}
	return nil
}

// retryReply re-sends the last acknowledged reply, message id and all:
// after a restart, it must change nothing.
func (a *loadAgent) retryReply(ctx context.Context, conn *wsConn) error {
	l, op, cl := a.l, *a.lastReply, a.lastReplyCv
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	r, err := conn.do(rctx, request(cl, op), nil)
	cancel()
	if err != nil {
		return err
	}
	if !r.OK {
		if r.code() == "rate_limited" || r.code() == "unavailable" {
			return errors.New(r.code())
		}
		l.probs.add("re-sent reply refused", "%s %s: %s", cl.id, op.msgID, r.code())
		return nil
	}
	var res convResult
	if err := json.Unmarshal(r.Result, &res); err != nil {
		return err
	}
	if res.Seq != 0 || res.Conv.Version != cl.ver {
		l.stats.duplicates.Add(1)
		l.probs.add("DUPLICATE: a re-sent reply changed the conversation", "%s %s: seq %d, version %d, want seq 0 and version %d",
			cl.id, op.msgID, res.Seq, res.Conv.Version, cl.ver)
		cl.adopt(res.Conv)
		return nil
	}
	l.stats.retriedNoop.Add(1)
	return nil
}

// ---- presence churn ----

// churn connects, stays a moment and leaves, politely or by logging out,
// until stop.
func (l *load) churn(ctx context.Context, id string, rng *rand.Rand, joined func()) {
	defer l.wg.Done()
	token := l.churnTok[id]
	first := true
	defer func() {
		if first {
			joined()
		}
	}()
	for ctx.Err() == nil && !l.isStopping() {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, _, err := dialWS(dctx, l.hc, l.base, token, nil, nil)
		cancel()
		if err != nil {
			pause(ctx, time.Duration(50+rng.IntN(100))*time.Millisecond)
			continue
		}
		if first {
			first = false
			joined()
		}
		l.stats.churnConnects.Add(1)
		select {
		case <-conn.done:
		case <-ctx.Done():
		case <-l.stopping:
		case <-time.After(time.Duration(300+rng.IntN(1200)) * time.Millisecond):
		}
		if rng.IntN(100) < 35 {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if r, err := conn.do(rctx, map[string]any{"op": "logout"}, nil); err == nil && r.OK {
				l.stats.logouts.Add(1)
				select { // the hub closes the socket with 4001 after the reply
				case <-conn.done:
				case <-rctx.Done():
				}
			}
			cancel()
		}
		conn.close()
	}
}

// ---- the service client ----

// inboundLedger is one of the service client's conversations.
type inboundLedger struct {
	id    string
	ver   uint64
	acked []string // message ids acknowledged, in order
	maybe []string // sent, never answered (the test ended first): 0 or 1 times
}

type inboundClient struct {
	l      *load
	token  string
	convs  []*inboundLedger
	recent []ackedInbound // the last few acknowledged, re-sent after an outage
}

type ackedInbound struct {
	cl *inboundLedger
	id string
}

// run delivers customer messages with unique ids, one at a time, retrying
// each until it is acknowledged.
func (s *inboundClient) run(ctx context.Context) {
	defer s.l.wg.Done()
	for n := 1; ctx.Err() == nil && !s.l.isStopping(); n++ {
		cl := s.convs[n%len(s.convs)]
		id := fmt.Sprintf("%s-m%d", cl.id, n)
		outage, ok := s.deliver(ctx, cl, id)
		if !ok {
			cl.maybe = append(cl.maybe, id)
			return
		}
		if outage {
			// After an outage, deliveries already acknowledged are sent
			// again, as a backend that is unsure would: each must be a
			// no-op.
			for _, r := range s.recent[:max(0, len(s.recent)-1)] {
				s.redeliver(ctx, r)
			}
		}
		pause(ctx, s.l.cfg.inboundEvery)
	}
}

func (s *inboundClient) body(id string) map[string]any {
	return map[string]any{"message_id": id, "text": "message " + id}
}

// deliver sends one message until it is acknowledged; outage is true when
// the hub was unreachable or unavailable meanwhile.
func (s *inboundClient) deliver(ctx context.Context, cl *inboundLedger, id string) (outage, ok bool) {
	l := s.l
	uncertain := false // an attempt may have committed without an answer
	for attempt := 1; ctx.Err() == nil; attempt++ {
		r, err := l.api.do(ctx, http.MethodPost, "/api/v1/conversations/"+cl.id+"/inbound", s.token, s.body(id))
		if err != nil || r.status == http.StatusServiceUnavailable {
			outage, uncertain = true, true
			pause(ctx, 50*time.Millisecond)
			continue
		}
		if r.status == http.StatusTooManyRequests {
			pause(ctx, 200*time.Millisecond)
			continue
		}
		if r.status != http.StatusOK {
			l.probs.add("inbound refused", "%s %s: %d %.200s", cl.id, id, r.status, r.body)
			return outage, true
		}
		var ans inboundAnswer
		if err := json.Unmarshal(r.body, &ans); err != nil {
			l.probs.add("bad inbound answer", "%s: %v", id, err)
			return outage, true
		}
		switch {
		case ans.Duplicate && attempt == 1:
			l.stats.duplicates.Add(1)
			l.probs.add("DUPLICATE: a new message id was taken for a duplicate", "%s %s", cl.id, id)
		case ans.Duplicate:
			l.stats.uncertainCommitted.Add(1) // an attempt whose answer was lost had committed
		case ans.Conversation.Version != cl.ver+1:
			l.probs.add("acknowledged version is not the next one", "%s %s: got version %d, want %d", cl.id, id, ans.Conversation.Version, cl.ver+1)
		}
		if uncertain && !ans.Duplicate {
			l.stats.uncertainNot.Add(1)
		}
		cl.ver = ans.Conversation.Version
		cl.acked = append(cl.acked, id)
		l.stats.acked[kindInbound].Add(1)
		s.recent = append(s.recent, ackedInbound{cl, id})
		if len(s.recent) > 4 {
			s.recent = s.recent[1:]
		}
		return outage, true
	}
	return outage, false
}

// redeliver sends an acknowledged message again: it must answer duplicate,
// seq 0, the conversation unchanged.
func (s *inboundClient) redeliver(ctx context.Context, r ackedInbound) {
	l := s.l
	for ctx.Err() == nil {
		res, err := l.api.do(ctx, http.MethodPost, "/api/v1/conversations/"+r.cl.id+"/inbound", s.token, s.body(r.id))
		if err != nil || res.status == http.StatusServiceUnavailable || res.status == http.StatusTooManyRequests {
			pause(ctx, 100*time.Millisecond)
			continue
		}
		var ans inboundAnswer
		if res.status != http.StatusOK || json.Unmarshal(res.body, &ans) != nil {
			l.probs.add("re-sent inbound refused", "%s %s: %d %.200s", r.cl.id, r.id, res.status, res.body)
			return
		}
		if !ans.Duplicate {
			// The acknowledged message was not there: it was lost, and
			// this delivery put it back.
			l.stats.losses.Add(1)
			l.probs.add("LOSS: an acknowledged inbound was not there when re-sent", "%s %s: got duplicate false, version %d", r.cl.id, r.id, ans.Conversation.Version)
			r.cl.ver = ans.Conversation.Version
			return
		}
		if ans.Seq != 0 || ans.Conversation.Version != r.cl.ver {
			l.stats.duplicates.Add(1)
			l.probs.add("DUPLICATE: a re-sent inbound changed the conversation", "%s %s: seq %d version %d, want 0 and %d", r.cl.id, r.id, ans.Seq, ans.Conversation.Version, r.cl.ver)
			return
		}
		l.stats.retriedNoop.Add(1)
		return
	}
}

// ---- the final checks ----

// finalReport is what checkFinal found.
type finalReport struct {
	convs, messages, historyEntries int
	losses, duplicates              int
}

// checkFinal reads every conversation through the HTTP API, after the
// clients have stopped, and compares it with the ledgers: state, history
// (exactly the expected entries, in order, a replay that ends at the
// current owner and queue, increasing seqs) and messages (every
// acknowledged id exactly once, nothing else).
func (l *load) checkFinal(t *testing.T) finalReport {
	t.Helper()
	var rep finalReport
	tokens := make([]string, 8)
	for i := range tokens {
		tokens[i] = mintFor(t, l.cfg.ws, "checker-"+strconv.Itoa(i), queues.RoleService)
	}
	n := 0
	get := func(id string) convDetail {
		n++
		var d convDetail
		l.api.must(t, http.MethodGet, "/api/v1/conversations/"+id, tokens[n/40%len(tokens)], nil, &d)
		rep.convs++
		rep.messages += len(d.Messages)
		rep.historyEntries += len(d.History)
		return d
	}
	for _, a := range l.agents {
		for _, cl := range a.convs {
			d := get(cl.id)
			c := d.Conversation
			if c.Version < cl.ver {
				rep.losses++
				t.Errorf("LOSS %s: got version %d, want the acknowledged %d", cl.id, c.Version, cl.ver)
			} else if c.Version != cl.ver || c.Queue != cl.queue || c.Owner != cl.owner {
				t.Errorf("%s: got v%d %s/%q, want v%d %s/%q (the agent's last acknowledged change)", cl.id, c.Version, c.Queue, c.Owner, cl.ver, cl.queue, cl.owner)
			}
			checkHistoryChain(t, cl.id, d)
			if !cl.tainted {
				l.compareHistory(t, &rep, cl.id, d.History, cl.history)
				compareMessages(t, &rep, cl.id, d.Messages, cl.messages, nil)
			}
		}
	}
	for _, cl := range l.svc.convs {
		d := get(cl.id)
		c := d.Conversation
		if c.Version < cl.ver {
			rep.losses++
			t.Errorf("LOSS %s: got version %d, want the acknowledged %d", cl.id, c.Version, cl.ver)
		}
		// Every inbound is one version: the version counts the messages.
		if int(c.Version) != len(d.Messages) {
			t.Errorf("%s: got version %d with %d messages, want one version per message", cl.id, c.Version, len(d.Messages))
		}
		checkHistoryChain(t, cl.id, d)
		l.compareHistory(t, &rep, cl.id, d.History, []string{histKey(queues.AuditQueue, "", "new", queues.ReasonCreated)})
		compareMessages(t, &rep, cl.id, d.Messages, cl.acked, cl.maybe)
	}
	return rep
}

func (l *load) compareHistory(t *testing.T, rep *finalReport, id string, got []queues.AuditEntry, want []string) {
	t.Helper()
	keys := make([]string, len(got))
	for i, h := range got {
		keys[i] = histKey(h.Kind, h.From, h.To, h.Reason)
	}
	if slices.Equal(keys, want) {
		return
	}
	switch {
	case len(keys) < len(want):
		rep.losses += len(want) - len(keys)
	case len(keys) > len(want):
		rep.duplicates += len(keys) - len(want)
	}
	i := 0
	for i < len(keys) && i < len(want) && keys[i] == want[i] {
		i++
	}
	t.Errorf("history of %s: got %d entries, want %d; first difference at %d:\n  got  %v\n  want %v",
		id, len(keys), len(want), i, keys[i:min(len(keys), i+4)], want[i:min(len(want), i+4)])
}

// checkHistoryChain: seqs increase, each owner entry starts where the
// previous one ended and the last ends at the current owner; the same for
// queue entries and the current queue.
func checkHistoryChain(t *testing.T, id string, d convDetail) {
	t.Helper()
	owner, queue := "", ""
	var last uint64
	for i, h := range d.History {
		if h.Seq <= last {
			t.Errorf("history of %s: entry %d has seq %d after %d, want increasing", id, i, h.Seq, last)
		}
		last = h.Seq
		switch h.Kind {
		case queues.AuditOwner:
			if h.From != owner {
				t.Errorf("history of %s: entry %d moves the owner from %q, want from %q (the previous entry's)", id, i, h.From, owner)
			}
			owner = h.To
		case queues.AuditQueue:
			if h.From != queue {
				t.Errorf("history of %s: entry %d moves the queue from %q, want from %q", id, i, h.From, queue)
			}
			queue = h.To
		}
	}
	if owner != d.Conversation.Owner || queue != string(d.Conversation.Queue) {
		t.Errorf("history of %s replays to %s/%q, want the current %s/%q", id, queue, owner, d.Conversation.Queue, d.Conversation.Owner)
	}
}

// compareMessages: every id of want exactly once, of maybe at most once,
// nothing else.
func compareMessages(t *testing.T, rep *finalReport, id string, got []queues.Message, want, maybe []string) {
	t.Helper()
	if len(got) >= 100 {
		t.Errorf("%s has %d messages: the API shows only the latest 100, the check needs fewer", id, len(got))
		return
	}
	seen := map[string]int{}
	for _, m := range got {
		seen[m.ID]++
	}
	for _, w := range want {
		switch seen[w] {
		case 0:
			rep.losses++
			t.Errorf("LOSS %s: acknowledged message %s is missing", id, w)
		case 1:
		default:
			rep.duplicates++
			t.Errorf("DUPLICATE %s: message %s is there %d times, want once", id, w, seen[w])
		}
		delete(seen, w)
	}
	for _, m := range maybe {
		if seen[m] > 1 {
			rep.duplicates++
			t.Errorf("DUPLICATE %s: message %s is there %d times, want at most once", id, m, seen[m])
		}
		delete(seen, m)
	}
	for m, n := range seen {
		t.Errorf("%s: message %s (%d times) was never sent by its writer", id, m, n)
	}
}

// coverageReport is what checkCoverage found.
type coverageReport struct {
	viewEvents, otherEvents int // events the log has for the clients' views and workspace streams
	gaps, phantoms          int
	dupView, stale          int
	inversions              int // events after a reply with a higher seq, on one socket
}

// checkCoverage compares what each agent received with what the event log
// holds. For each agent, a new socket of the same agent resumes from the
// agent's first hello (hello.missed: every presence, agent, settings and
// own notification event since) and subscribes its view with since set to
// the view's first subscribe (every conversation event of the view since).
// Up to the last seq the agent had seen, every such event must have
// reached the agent, live or replayed, once; and every conversation event
// the agent got must be in the log, for that conversation at that version.
func (l *load) checkCoverage(t *testing.T, ctx context.Context) coverageReport {
	t.Helper()
	var rep coverageReport
	for _, a := range l.agents {
		cv := &a.cov
		cv.mu.Lock()
		wsFloor, viewFloor, wsSeq, viewSeq := cv.wsFloor, cv.viewFloor, cv.wsSeq, cv.viewSince
		rep.inversions += cv.inversions
		if cv.inversions > 0 {
			t.Errorf("%s: %d events came after a reply with a higher seq on the same socket (first: %s): a client resuming from the highest seq it has seen, replies included (protocol.md, Resuming), misses such an event if its socket drops in between",
				a.id, cv.inversions, cv.firstInv)
		}
		rep.dupView += cv.dupView
		rep.stale += cv.staleView
		if cv.outOfOrder > 0 || cv.noView > 0 {
			t.Errorf("%s: %d events out of order on a socket, %d conversation events on a socket without the view", a.id, cv.outOfOrder, cv.noView)
		}
		cv.mu.Unlock()

		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, hello, err := dialWS(dctx, l.hc, l.base, a.token, &wsFloor, nil)
		cancel()
		if err != nil {
			t.Errorf("coverage check for %s: %v", a.id, err)
			continue
		}
		if !hello.Resumed {
			t.Errorf("coverage check for %s: hello since %d did not resume (resync %v): the event log no longer reaches back", a.id, wsFloor, hello.Resync)
		}
		for _, raw := range hello.Missed {
			var ev wsMsg
			if err := json.Unmarshal(raw, &ev); err != nil || ev.Seq > wsSeq {
				continue
			}
			rep.otherEvents++
			if !cv.other[otherKey(&ev)] {
				rep.gaps++
				t.Errorf("GAP %s: %s event seq %d (%s) never reached it (its last seq %d)", a.id, ev.Kind, ev.Seq, otherKey(&ev), wsSeq)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := conn.do(rctx, map[string]any{"op": "subscribe", "view": "check", "queue": a.view.queue,
			"filter": a.view.filter, "since": viewFloor}, nil)
		cancel()
		conn.close()
		var res subscribeResult
		if err != nil || !r.OK || json.Unmarshal(r.Result, &res) != nil || !res.Resumed {
			t.Errorf("coverage check for %s: subscribe since %d: err %v, reply %+v", a.id, viewFloor, err, r)
			continue
		}
		inLog := map[uint64]bool{}
		for _, raw := range res.Events {
			var ev wsMsg
			if err := json.Unmarshal(raw, &ev); err != nil || ev.Seq > viewSeq {
				continue
			}
			rep.viewEvents++
			inLog[ev.Seq] = true
			got, ok := cv.conv[ev.Seq]
			switch {
			case !ok:
				rep.gaps++
				t.Errorf("GAP %s (view %s): conversation event seq %d (%s) never reached it (its view's last seq %d)", a.id, a.view, ev.Seq, convKey(&ev), viewSeq)
			case got != convKey(&ev):
				rep.phantoms++
				t.Errorf("%s: event seq %d was %s when it came, the log says %s", a.id, ev.Seq, got, convKey(&ev))
			}
		}
		for seq, k := range cv.conv {
			if seq <= viewSeq && !inLog[seq] {
				rep.phantoms++
				t.Errorf("%s (view %s): got event seq %d (%s), which the log does not have for the view", a.id, a.view, seq, k)
			}
		}
	}
	return rep
}

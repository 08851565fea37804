package queues

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The committer: one goroutine applies every change. It takes every request
// waiting (up to maxBatch), applies them in order against a batch-local
// overlay of the committed state (request 2 sees request 1's result), writes
// the whole batch in one Badger transaction and, only once that commit
// succeeded, installs the new records into memory, publishes the events and
// answers the callers. One fsync per batch is what lets throughput grow with
// the number of concurrent writers (group commit).
//
// Because this loop is the only writer, Badger's ErrConflict cannot happen
// and nothing here retries it: the version checks of the rules are the
// optimistic concurrency the callers see.

// maxBatch bounds a batch: far more than the writers a hub has waiting at
// once (each connection has at most a few changes in flight), so an fsync
// is shared by all of them, while a burst cannot make one batch, and the
// latency of everyone in it, grow without bound.
const maxBatch = 512

type request struct {
	fn    func(b *batch) (any, error)
	done  <-chan struct{} // the caller's ctx.Done: skip what nobody waits for
	reply chan response   // buffered 1: the committer never blocks on it
}

// requestPool recycles requests with their reply channels: a change
// allocated both, and making the channel showed as 4 % of the hub's CPU in
// a durable run's profile, most of it the collector's share. Only a
// request whose reply was received goes back.
var requestPool = sync.Pool{New: func() any { return &request{reply: make(chan response, 1)} }}

type response struct {
	v   any
	err error
}

// do sends fn to the committer and waits for its answer.
func do[T any](s *Store, ctx context.Context, fn func(b *batch) (T, error)) (T, error) {
	var zero T
	if s.closed.Load() {
		return zero, errClosed
	}
	r := requestPool.Get().(*request)
	r.fn = func(b *batch) (any, error) { return fn(b) }
	r.done = ctx.Done()
	select {
	case s.reqs <- r:
	case <-s.quit:
		return zero, errClosed
	case <-ctx.Done():
		return zero, ctx.Err()
	}
	var resp response
	select {
	case resp = <-r.reply:
	case <-ctx.Done():
		// The change may still commit; the caller learns of it through
		// the events like everyone else. The committer may still answer
		// r, so it is not reused.
		return zero, ctx.Err()
	case <-s.loopDone:
		select {
		case resp = <-r.reply:
		default:
			return zero, errClosed
		}
	}
	// Answered: the committer is done with r.
	r.fn, r.done = nil, nil
	requestPool.Put(r)
	if resp.err != nil {
		return zero, resp.err
	}
	return resp.v.(T), nil
}

func (s *Store) commitLoop() {
	defer close(s.loopDone)
	reqs := make([]*request, 0, maxBatch)
	for {
		select {
		case <-s.quit:
			s.drain()
			return
		case r := <-s.reqs:
			reqs = append(reqs[:0], r)
			for range 4 {
				// Let the writers that are runnable right now (woken by
				// the previous batch's answers) reach the queue, so they
				// share this batch's fsync instead of waiting for the
				// next one. With nothing else runnable this costs well
				// under a microsecond.
				runtime.Gosched()
				n := len(reqs)
			more:
				for len(reqs) < maxBatch {
					select {
					case r := <-s.reqs:
						reqs = append(reqs, r)
					default:
						break more
					}
				}
				if len(reqs) == n || len(reqs) == maxBatch {
					break
				}
			}
			s.commitBatch(reqs)
			clear(reqs)
		}
	}
}

// drain answers every request still queued at Close.
func (s *Store) drain() {
	for {
		select {
		case r := <-s.reqs:
			r.reply <- response{err: errClosed}
		default:
			return
		}
	}
}

func isDone(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func (s *Store) commitBatch(reqs []*request) {
	b := s.newBatch()
	defer b.discard()
	defer s.keepOps(b)
	resps := make([]response, len(reqs))
	for i, r := range reqs {
		if isDone(r.done) {
			resps[i].err = context.Canceled
			continue
		}
		v, err := r.fn(b)
		resps[i] = response{v: v, err: err}
	}
	b.finish()
	if len(b.ops) > 0 {
		start := time.Now()
		if err := s.write(b.ops); err != nil {
			for _, undo := range b.onFail {
				undo()
			}
			err = fmt.Errorf("%w: commit failed: %w", ErrUnavailable, err)
			s.failed.Store(&err)
			s.log.Error("store commit failed", "err", err, "requests", len(reqs))
			// Every request fails, even one the rules refused: it was
			// judged against earlier requests of this batch, which never
			// happened.
			for _, r := range reqs {
				r.reply <- response{err: err}
			}
			return
		}
		s.failed.Store(nil)
		if f := s.onCommit.Load(); f != nil {
			(*f)(len(reqs), time.Since(start))
		}
	}
	s.install(b)
	s.publish(b)
	for i, r := range reqs {
		r.reply <- resps[i]
	}
}

// op is one Badger write of a batch.
type op struct {
	k, v []byte
	del  bool
}

// write commits ops in one transaction. A batch too big for one Badger
// transaction (a sweep of very many conversations) is split: every part is
// committed before anything is installed, so memory never runs ahead of
// disk; a failure after a part committed leaves disk ahead of memory until
// the next start-up reloads it, and Ready reports the failure meanwhile.
func (s *Store) write(ops []op) error {
	if e := s.writeFault.Load(); e != nil {
		return *e
	}
	if err := s.roomFor(ops); err != nil {
		return err
	}
	txn := s.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	put := func(o op) error {
		if o.del {
			return txn.Delete(o.k)
		}
		return txn.Set(o.k, o.v)
	}
	for _, o := range ops {
		err := put(o)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = s.db.NewTransaction(true)
			err = put(o)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

// errDiskFull: a commit was refused because the disk has no room for it.
var errDiskFull = errors.New("disk full")

// memTableSize is Badger's memtable size for stores on disk.
const memTableSize = 16 << 20

// minFreeBytes is the room a commit leaves on the disk for what Badger
// writes by itself: a whole memtable's flush (which writes its table at
// once, through a memory map) and some more (manifest, value log).
const minFreeBytes = memTableSize + 4<<20

// diskRecoverBytes is how much more than minFreeBytes must be free before a
// store that ran out of room takes commits again.
const diskRecoverBytes = 4 << 20

// diskReserve is the free space a commit must leave: minFreeBytes, and
// diskRecoverBytes more while the store is recovering from a full disk.
func (s *Store) diskReserve() uint64 {
	if s.diskLow.Load() {
		return minFreeBytes + diskRecoverBytes
	}
	return minFreeBytes
}

// roomFor refuses a commit the disk cannot hold. Badger appends to its
// write-ahead log through a memory map of a sparse file: on a full disk the
// write does not fail, the process dies of SIGBUS. So the store checks the
// free space itself, before every commit, and fails the batch cleanly
// instead (ErrUnavailable; Ready reports it until there is room again).
// The reserve covers a memtable's flush, which also writes through a
// memory map; compactions are not covered: keep well over minFreeBytes free
// (docs/operations.md).
func (s *Store) roomFor(ops []op) error {
	if s.opts.InMemory {
		return nil
	}
	free, ok := diskFree(s.opts.Dir)
	if !ok {
		return nil
	}
	// Each entry costs its key and value plus a header and checksum in
	// the log; twice that covers the log and the memtable's flush share.
	// Once the disk has been too full, it stays full until there is
	// clearly room again (diskReserve): otherwise small commits would slip
	// through while larger ones fail, and readiness would flap.
	need := s.diskReserve()
	for _, o := range ops {
		need += 2 * uint64(len(o.k)+len(o.v)+32)
	}
	if free < need {
		s.diskLow.Store(true)
		return fmt.Errorf("%w: %d bytes free in %s, a commit needs %d", errDiskFull, free, s.opts.Dir, need)
	}
	s.diskLow.Store(false)
	return nil
}

// batch is the overlay one commit builds on the committed state.
type batch struct {
	s     *Store
	tx    map[string]*wsTx
	order []*wsTx
	ops   []op
	// newTimers are pushed onto the heap at install; onFail undoes what a
	// request did to committer-owned state (the heap) when the commit fails.
	newTimers []timerEntry
	onFail    []func()
	read      *badger.Txn // lazily opened, for message dedupe lookups
}

// wsTx is one workspace's part of a batch.
type wsTx struct {
	b        *batch
	name     string
	w        *workspace // committed state; nil while the workspace is new
	rec      wsRecord   // working copy of settings and counters
	recDirty bool
	convs    map[string]*convRec
	agents   map[string]*Agent
	notifAdd []Notification
	readUpTo map[string]uint64
	msgs     map[string]struct{} // message keys written in this batch
	events   []Event
}

func (s *Store) newBatch() *batch {
	return &batch{s: s, tx: map[string]*wsTx{}, ops: s.opsBuf[:0]}
}

// maxKeptWire bounds the scratch buffer events are encoded in, so that one
// huge event (a conversation with a long preview in a big batch) does not
// pin its buffer for good.
const maxKeptWire = 64 << 10

// maxKeptOps bounds the op slice the committer keeps between batches, so
// one huge batch (a sweep) does not pin its slice for good.
const maxKeptOps = 4096

// keepOps hands b's op slice to the next batch. A batch of a busy hub
// holds hundreds of ops; growing a new slice for each was 6 % of the
// bytes a durable run allocates. Only the slice is reused: the keys and
// values it points to are new for every op and never written again, so
// nothing Badger still holds can change.
func (s *Store) keepOps(b *batch) {
	clear(b.ops) // drop the keys and values for the collector
	if cap(b.ops) <= maxKeptOps {
		s.opsBuf = b.ops[:0]
	} else {
		// The batch outgrew the kept slice into one too big to keep; what
		// it appended to the kept one before that must go too.
		clear(s.opsBuf[:cap(s.opsBuf)])
	}
	b.ops = nil
}

func (b *batch) discard() {
	if b.read != nil {
		b.read.Discard()
	}
}

// ws returns the batch's view of a workspace: ErrNotFound if it does not
// exist, unless create, which creates it with the default settings.
func (b *batch) ws(name string, create bool) (*wsTx, error) {
	if t := b.tx[name]; t != nil {
		return t, nil
	}
	// The committer is the only writer of wss, so it reads it unlocked.
	w := b.s.wss[name]
	if w == nil && !create {
		return nil, fmt.Errorf("workspace %s: %w", name, ErrNotFound)
	}
	t := &wsTx{b: b, name: name, w: w, convs: map[string]*convRec{}, agents: map[string]*Agent{}}
	if w != nil {
		t.rec = w.rec
	} else {
		if err := ValidID("workspace", name); err != nil {
			return nil, err
		}
		t.rec = wsRecord{Settings: DefaultSettings()}
		t.recDirty = true
	}
	b.tx[name] = t
	b.order = append(b.order, t)
	return t, nil
}

func (b *batch) set(k, v []byte) { b.ops = append(b.ops, op{k: k, v: v}) }
func (b *batch) del(k []byte)    { b.ops = append(b.ops, op{k: k, del: true}) }

func (t *wsTx) conv(id string) *convRec {
	if c := t.convs[id]; c != nil {
		return c
	}
	if t.w != nil {
		return t.w.convs[id]
	}
	return nil
}

func (t *wsTx) agent(id string) (*Agent, bool) {
	if a := t.agents[id]; a != nil {
		return a, true
	}
	if t.w != nil {
		a := t.w.agents[id]
		return a, a != nil
	}
	return nil, false
}

// agentIDs lists every agent of the workspace as of this batch.
func (t *wsTx) agentIDs() []string {
	var ids []string
	if t.w != nil {
		for id := range t.w.agents {
			ids = append(ids, id)
		}
	}
	for id := range t.agents {
		if t.w == nil || t.w.agents[id] == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func (t *wsTx) env() *ruleEnv {
	return &ruleEnv{now: t.b.s.now(), settings: &t.rec.Settings, agent: t.agent}
}

// hasMessage reports whether message id msg was already stored on conv.
func (t *wsTx) hasMessage(conv, msg string) (bool, error) {
	k := messageKey(t.name, conv, msg)
	if _, ok := t.msgs[string(k)]; ok {
		return true, nil
	}
	if t.b.read == nil {
		t.b.read = t.b.s.db.NewTransaction(false)
	}
	_, err := t.b.read.Get(k)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, badger.ErrKeyNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
}

// ownedNew lists the conversations in new owned by agent as of this batch,
// in index order then batch order.
func (t *wsTx) ownedNew(agent string) []*convRec {
	var out []*convRec
	seen := map[string]bool{}
	consider := func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		if c := t.conv(id); c.Queue == QueueNew && c.Owner == agent {
			out = append(out, c)
		}
	}
	if t.w != nil {
		t.w.queues[0].byOwner[agent].walk(nil, func(e ientry) bool { consider(e.id); return true })
	}
	for id := range t.convs {
		consider(id)
	}
	return out
}

func (t *wsTx) dirtyRec() { t.recDirty = true }

// emit assigns the event its sequence number, encodes its wire form once
// and logs it, trimming the log to EventLogSize.
func (t *wsTx) emit(ev Event) uint64 {
	t.rec.Head++
	t.dirtyRec()
	ev.Workspace = t.name
	ev.Seq = t.rec.Head
	if ev.At.IsZero() {
		ev.At = t.b.s.now()
	}
	// Encoded in the committer's scratch buffer, then copied at its size:
	// a buffer guessed ahead was outgrown by a conversation event and
	// reallocated, 1.5 KB allocated for 700 bytes kept.
	s := t.b.s
	s.wireBuf = appendEventWire(s.wireBuf[:0], &ev)
	wire := bytes.Clone(s.wireBuf)
	if cap(s.wireBuf) > maxKeptWire {
		s.wireBuf = nil
	}
	ev.Wire = wire
	t.events = append(t.events, ev)
	t.b.set(eventKey(t.name, ev.Seq), wire)
	if size := uint64(t.b.s.opts.EventLogSize); ev.Seq > size {
		t.b.del(eventKey(t.name, ev.Seq-size))
	}
	return ev.Seq
}

// wireEvent is an event as the hub sends it; appendEventWire writes the
// same bytes json.Marshal would, and decodeWire reads them back with it.
type wireEvent struct {
	Type string `json:"type"`
	*Event
}

func (t *wsTx) audit(conv string, a AuditEntry) {
	t.rec.AuditSeq++
	t.dirtyRec()
	a.Seq = t.rec.AuditSeq
	t.b.set(historyKey(t.name, conv, a.Seq), encodeAudit(&a))
}

func (t *wsTx) adminLog(l AdminLogEntry) {
	t.rec.AdminSeq++
	t.dirtyRec()
	l.Seq = t.rec.AdminSeq
	t.b.set(adminLogKey(t.name, l.Seq), encodeAdminLog(&l))
}

// putConv stores c (which replaces prev, nil for a new conversation) and
// keeps the boomerang timer index in step.
func (t *wsTx) putConv(prev, c *convRec) {
	t.convs[c.ID] = c
	t.b.set(convKey(t.name, c.ID), encodeConv(c))
	var was = prev != nil && !prev.Boomerang.IsZero()
	if was && !prev.Boomerang.Equal(c.Boomerang) {
		t.b.del(timerKey(prev.Boomerang, t.name, timerBoomerang, c.ID))
	}
	if !c.Boomerang.IsZero() && (!was || !prev.Boomerang.Equal(c.Boomerang)) {
		t.b.set(timerKey(c.Boomerang, t.name, timerBoomerang, c.ID), nil)
		t.b.newTimers = append(t.b.newTimers, timerEntry{due: c.Boomerang, deadline: c.Boomerang,
			ws: t.name, kind: timerBoomerang, id: c.ID})
	}
}

// putAgent stores a and keeps the grace timer index in step.
func (t *wsTx) putAgent(prev *Agent, a *Agent) {
	t.agents[a.ID] = a
	t.b.set(agentKey(t.name, a.ID), encodeAgent(a))
	was := prev != nil && !prev.GraceDeadline.IsZero()
	if was && !prev.GraceDeadline.Equal(a.GraceDeadline) {
		t.b.del(timerKey(prev.GraceDeadline, t.name, timerGrace, a.ID))
	}
	if !a.GraceDeadline.IsZero() && (!was || !prev.GraceDeadline.Equal(a.GraceDeadline)) {
		t.b.set(timerKey(a.GraceDeadline, t.name, timerGrace, a.ID), nil)
		t.b.newTimers = append(t.b.newTimers, t.b.s.graceEntry(t.name, a.ID, a.GraceDeadline))
	}
}

// apply writes what a rule decided for one conversation: the record, its
// audit entries, the message, the notification and the events.
func (t *wsTx) apply(prev *convRec, o outcome) Result {
	if !o.changed {
		return Result{Conv: o.conv.Conversation}
	}
	c := new(convRec)
	*c = o.conv
	t.putConv(prev, c)
	for _, a := range o.audits {
		t.audit(c.ID, a)
	}
	if o.msg != nil {
		k := messageKey(t.name, c.ID, o.msg.ID)
		if t.msgs == nil {
			t.msgs = map[string]struct{}{}
		}
		t.msgs[string(k)] = struct{}{}
		t.b.set(k, encodeMessage(o.msg, c.messages))
	}
	ev := Event{Kind: EventConversation, Actor: o.actor, Reason: o.reason}
	conv := c.Conversation
	ev.Conv = &conv
	if prev != nil {
		ev.Prev = &ConvState{Queue: prev.Queue, Owner: prev.Owner}
	}
	seq := t.emit(ev)
	if o.notify != nil {
		seq = t.notify(*o.notify)
	}
	return Result{Conv: c.Conversation, Changed: true, Seq: seq}
}

// notify stores an unread notification and emits its event.
func (t *wsTx) notify(n Notification) uint64 {
	t.rec.NotifSeq++
	t.dirtyRec()
	n.Seq = t.rec.NotifSeq
	t.b.set(notificationKey(t.name, n.Agent, n.Seq), encodeNotification(&n))
	t.notifAdd = append(t.notifAdd, n)
	return t.emit(Event{Kind: EventNotification, At: n.At, Actor: n.By, Reason: ReasonManualAssign, Notification: &n})
}

// finishBatch writes every touched workspace record once.
func (b *batch) finish() {
	for _, t := range b.order {
		if t.recDirty {
			b.set(workspaceKey(t.name), encodeWorkspace(&t.rec))
		}
	}
}

// install makes a committed batch visible: each workspace under its lock,
// so a reader sees all of a batch's changes to it or none.
func (s *Store) install(b *batch) {
	for _, t := range b.order {
		w := t.w
		if w == nil {
			w = newWorkspace(t.name, t.rec)
		}
		// Agents are encoded for the roster before the lock is taken.
		var roster []rosterEntry
		if len(t.agents) > 0 {
			roster = make([]rosterEntry, 0, len(t.agents))
			for _, a := range t.agents {
				roster = append(roster, rosterEntry{a: a, json: AppendAgentJSON(nil, a)})
			}
		}
		w.mu.Lock()
		w.rec = t.rec
		for id, c := range t.convs {
			if old := w.convs[id]; old != nil {
				w.queues[queueIdx(old.Queue)].remove(old)
			}
			w.queues[queueIdx(c.Queue)].add(c)
			w.convs[id] = c
		}
		for _, e := range roster {
			old := w.agents[e.a.ID]
			w.agents[e.a.ID] = e.a
			w.putRoster(old, e)
		}
		for _, n := range t.notifAdd {
			w.unread[n.Agent] = append(w.unread[n.Agent], n)
		}
		for agent, upTo := range t.readUpTo {
			kept := w.unread[agent][:0:0]
			for _, n := range w.unread[agent] {
				if n.Seq > upTo {
					kept = append(kept, n)
				}
			}
			if len(kept) == 0 {
				delete(w.unread, agent)
			} else {
				w.unread[agent] = kept
			}
		}
		w.mu.Unlock()
		if t.w == nil {
			s.mu.Lock()
			s.wss[t.name] = w
			s.mu.Unlock()
		}
	}
	for _, e := range b.newTimers {
		s.timers.push(e)
	}
	s.publishNextDue()
}

// publish hands each workspace's events, in Seq order, to the publisher.
func (s *Store) publish(b *batch) {
	p := s.pub.Load().p
	if p == nil {
		return
	}
	for _, t := range b.order {
		if len(t.events) > 0 {
			p.Publish(t.name, t.events)
		}
	}
}

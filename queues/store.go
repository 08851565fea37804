package queues

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Options configure a Store.
type Options struct {
	// Dir is the Badger directory; ignored when InMemory.
	Dir string
	// InMemory keeps everything in memory (tests).
	InMemory bool
	// SyncWrites makes every commit durable (fsync) before it is
	// acknowledged. Default false; cmd turns it on.
	SyncWrites bool
	// EventLogSize is how many events per workspace are kept for resume.
	// Default 10,000.
	EventLogSize int
	// Publisher receives committed events; may be nil (see SetPublisher).
	Publisher Publisher
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives the store's and Badger's warnings. Default discard.
	Logger *slog.Logger
	// ReconcileEvery is how often Run reconciles. Default 5 s.
	ReconcileEvery time.Duration
	// GraceSlack is how long past a stored grace deadline an agent who is
	// still not offline is forced offline by the store itself (the presence
	// timer was lost, for example in a crash). Default 5 s.
	GraceSlack time.Duration
}

const (
	defaultEventLogSize   = 10000
	defaultReconcileEvery = 5 * time.Second
	defaultGraceSlack     = 5 * time.Second
)

// Store is presencehub's state: every workspace in memory, Badger for
// durability, one committer goroutine for every change. See doc.go.
type Store struct {
	opts Options
	log  *slog.Logger

	// dbMu guards db against Close while a read of history, messages, the
	// admin log or the event log is in flight (RLock), so those reads fail
	// cleanly instead of touching a closed DB.
	dbMu   sync.RWMutex
	db     *badger.DB
	closed atomic.Bool

	// mu guards wss (the map, not the workspaces: each has its own lock).
	// Only the committer adds to it.
	mu  sync.RWMutex
	wss map[string]*workspace

	pub atomic.Pointer[publisherBox]
	// onCommit hears of every batch written (SetCommitObserver).
	onCommit atomic.Pointer[CommitObserver]
	// failed is the error of the last failed commit, nil after a success.
	failed atomic.Pointer[error]
	// diskLow is set while commits are refused for want of disk space
	// (roomFor), until clearly more is free again.
	diskLow atomic.Bool

	reqs     chan *request
	quit     chan struct{} // closed by Close
	loopDone chan struct{} // closed when the committer has ended

	// timers is owned by the committer goroutine (and by Open before it
	// starts); nextDue publishes its earliest due time (UnixNano,
	// math.MaxInt64 for none) to Run, and wake tells Run it moved earlier.
	timers  timerHeap
	nextDue atomic.Int64
	wake    chan struct{}

	// opsBuf is the committer's: the last batch's op slice, emptied, for
	// the next batch to append to.
	opsBuf []op
	// wireBuf is the committer's scratch buffer for encoding events.
	wireBuf []byte

	closeOnce sync.Once
	closeErr  error

	// writeFault, when set, makes commits fail with its error before they
	// reach Badger: tests use it to check what a failed commit does.
	writeFault atomic.Pointer[error]
}

type publisherBox struct{ p Publisher }

// workspace is one tenant's state as committed. Installed records are never
// modified in place: the committer replaces them, so a reader may copy a
// record it found under the read lock.
type workspace struct {
	name string

	// mu guards every field below. The committer writes them (under Lock)
	// only after the Badger commit that made them durable; readers RLock.
	mu     sync.RWMutex
	rec    wsRecord
	agents map[string]*Agent
	convs  map[string]*convRec
	queues [3]*queueIndex
	unread map[string][]Notification // per agent, oldest first

	// roster is every agent in hello order (name, then id), each with its
	// JSON as AppendAgentJSON writes it: a hello copies the bytes instead
	// of copying, sorting and encoding a hundred records on every connect.
	// rosterLen is the sum of the encodings' lengths.
	roster    []rosterEntry
	rosterLen int
}

// rosterEntry is one agent of a workspace's roster: the installed record
// and its JSON.
type rosterEntry struct {
	a    *Agent
	json []byte
}

// cmpRoster orders the roster by name, then id.
func cmpRoster(e rosterEntry, a *Agent) int {
	if c := strings.Compare(e.a.Name, a.Name); c != 0 {
		return c
	}
	return strings.Compare(e.a.ID, a.ID)
}

// putRoster replaces old (nil for a new agent) with e in the roster,
// keeping its order. The caller holds mu.
func (w *workspace) putRoster(old *Agent, e rosterEntry) {
	if old != nil {
		i, found := slices.BinarySearchFunc(w.roster, old, cmpRoster)
		if found && old.Name == e.a.Name {
			w.rosterLen += len(e.json) - len(w.roster[i].json)
			w.roster[i] = e
			return
		}
		if found { // renamed: it moves
			w.rosterLen -= len(w.roster[i].json)
			w.roster = slices.Delete(w.roster, i, i+1)
		}
	}
	i, _ := slices.BinarySearchFunc(w.roster, e.a, cmpRoster)
	w.roster = slices.Insert(w.roster, i, e)
	w.rosterLen += len(e.json)
}

// buildRoster makes the roster from the agents, after a load.
func (w *workspace) buildRoster() {
	w.roster = make([]rosterEntry, 0, len(w.agents))
	w.rosterLen = 0
	for _, a := range w.agents {
		e := rosterEntry{a: a, json: AppendAgentJSON(nil, a)}
		w.roster = append(w.roster, e)
		w.rosterLen += len(e.json)
	}
	slices.SortFunc(w.roster, func(x, y rosterEntry) int { return cmpRoster(x, y.a) })
}

func newWorkspace(name string, rec wsRecord) *workspace {
	w := &workspace{name: name, rec: rec, agents: map[string]*Agent{}, convs: map[string]*convRec{},
		unread: map[string][]Notification{}}
	for i := range w.queues {
		w.queues[i] = newQueueIndex()
	}
	return w
}

func queueIdx(q Queue) int {
	switch q {
	case QueuePending:
		return 1
	case QueueResolved:
		return 2
	}
	return 0
}

var allQueues = [3]Queue{QueueNew, QueuePending, QueueResolved}

// Open opens (or creates) the store and loads every workspace into memory.
// Timers that fell due while the store was closed fire inside Open, before
// it returns, in one commit: the first reader already sees them applied.
func Open(opts Options) (*Store, error) {
	if opts.EventLogSize <= 0 {
		opts.EventLogSize = defaultEventLogSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ReconcileEvery <= 0 {
		opts.ReconcileEvery = defaultReconcileEvery
	}
	if opts.GraceSlack <= 0 {
		opts.GraceSlack = defaultGraceSlack
	}
	if !opts.InMemory && opts.Dir == "" {
		return nil, invalid("dir", "required unless in memory")
	}
	bo := badger.DefaultOptions(opts.Dir).
		// A memtable flush writes a table about this big through a memory
		// map, all at once; commits keep that much room free (roomFor), so
		// a smaller memtable means a smaller reserve. 16 MiB measured no
		// slower than Badger's 64 MiB default (docs/BENCHMARKS.md, Store).
		WithMemTableSize(memTableSize).
		WithSyncWrites(opts.SyncWrites).
		WithLogger(badgerLogger{opts.Logger}).
		WithNumVersionsToKeep(1).
		// The committer is Badger's only writer: there is nothing for
		// conflict detection to find, and it costs a fingerprint per key.
		WithDetectConflicts(false).
		WithMetricsEnabled(false)
	if opts.InMemory {
		// Tests open many small stores: smaller tables and caches keep
		// each one cheap.
		bo = bo.WithDir("").WithValueDir("").WithInMemory(true).
			WithMemTableSize(8 << 20).WithBlockCacheSize(8 << 20)
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{
		opts:     opts,
		log:      opts.Logger,
		db:       db,
		wss:      map[string]*workspace{},
		reqs:     make(chan *request, maxBatch),
		quit:     make(chan struct{}),
		loopDone: make(chan struct{}),
		wake:     make(chan struct{}, 1),
	}
	s.SetPublisher(opts.Publisher)
	if err := s.load(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.trimEventLogs(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: trim event log: %w", err)
	}
	s.publishNextDue()
	// The committer ends when Close closes quit, after answering every
	// request still queued.
	go s.commitLoop()
	if _, err := do(s, context.Background(), func(b *batch) (int, error) { return b.fireDue(), nil }); err != nil {
		s.Close()
		return nil, fmt.Errorf("open store: overdue timers: %w", err)
	}
	return s, nil
}

// Close stops the committer (queued callers get ErrUnavailable) and closes
// Badger. It is idempotent; Run returns once the store is closed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.quit)
		<-s.loopDone
		s.dbMu.Lock()
		s.closeErr = s.db.Close()
		s.dbMu.Unlock()
	})
	return s.closeErr
}

// SetPublisher sets (or, with nil, removes) who receives committed events.
// Safe while running: the next batch uses it.
func (s *Store) SetPublisher(p Publisher) {
	s.pub.Store(&publisherBox{p: p})
}

// CommitObserver hears of every batch the store has written: how many
// requests it carried and how long the write took, the flush to disk
// included when SyncWrites is set. It is called on the committer, before
// the batch's events are published: it must return at once.
type CommitObserver func(requests int, took time.Duration)

// SetCommitObserver sets (or, with nil, removes) the CommitObserver.
// Safe while running: the next batch uses it.
func (s *Store) SetCommitObserver(f CommitObserver) {
	if f == nil {
		s.onCommit.Store(nil)
		return
	}
	s.onCommit.Store(&f)
}

// Ready reports nil when the store accepts changes, else why not.
func (s *Store) Ready() error {
	if s.closed.Load() {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	if e := s.failed.Load(); e != nil {
		// A commit refused for want of disk space is no reason to stay
		// unready once there is room again, even before the next write.
		if errors.Is(*e, errDiskFull) && !s.opts.InMemory {
			if free, ok := diskFree(s.opts.Dir); ok && free >= s.diskReserve() {
				return nil
			}
		}
		return *e
	}
	return nil
}

func (s *Store) now() time.Time { return s.opts.Now().UTC() }

// normTime strips the monotonic reading and location, so a time read back
// from Badger equals the one in memory.
func normTime(t time.Time) time.Time { return t.UTC() }

// workspace returns the installed workspace or ErrNotFound.
func (s *Store) workspace(name string) (*workspace, error) {
	s.mu.RLock()
	w := s.wss[name]
	s.mu.RUnlock()
	if w == nil {
		return nil, fmt.Errorf("workspace %s: %w", name, ErrNotFound)
	}
	return w, nil
}

// Workspaces lists the workspaces, sorted.
func (s *Store) Workspaces() []string {
	s.mu.RLock()
	out := make([]string, 0, len(s.wss))
	for name := range s.wss {
		out = append(out, name)
	}
	s.mu.RUnlock()
	slices.Sort(out)
	return out
}

// Stats are gauges across all workspaces.
type Stats struct {
	Workspaces    int
	Conversations map[Queue]QueueStats
	Agents        map[Status]int
}

// QueueStats counts one queue's conversations by ownership.
type QueueStats struct {
	Owned   int
	Unowned int
}

// Stats reads the maintained counts; it scans agents but no conversations.
func (s *Store) Stats() Stats {
	st := Stats{Conversations: map[Queue]QueueStats{}, Agents: map[Status]int{}}
	for _, q := range allQueues {
		st.Conversations[q] = QueueStats{}
	}
	for _, status := range []Status{StatusOnline, StatusAway, StatusOffline} {
		st.Agents[status] = 0
	}
	s.mu.RLock()
	wss := make([]*workspace, 0, len(s.wss))
	for _, w := range s.wss {
		wss = append(wss, w)
	}
	s.mu.RUnlock()
	st.Workspaces = len(wss)
	for _, w := range wss {
		w.mu.RLock()
		for i, q := range allQueues {
			qs := st.Conversations[q]
			qs.Owned += w.queues[i].owned.len()
			qs.Unowned += w.queues[i].byOwner[""].len()
			st.Conversations[q] = qs
		}
		for _, a := range w.agents {
			st.Agents[a.Status]++
		}
		w.mu.RUnlock()
	}
	return st
}

func cloneSettings(s Settings) Settings {
	m := make(map[string]bool, len(s.AutoOwnership))
	for k, v := range s.AutoOwnership {
		m[k] = v
	}
	s.AutoOwnership = m
	return s
}

// Settings returns the workspace's settings.
func (s *Store) Settings(ws string) (Settings, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return Settings{}, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return cloneSettings(w.rec.Settings), nil
}

// Agents returns the workspace's agents sorted by name (then id).
func (s *Store) Agents(ws string) ([]Agent, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return nil, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	out := make([]Agent, len(w.roster))
	for i, e := range w.roster {
		out[i] = *e.a
	}
	return out, nil
}

// AppendAgentsJSON appends the workspace's agents as a JSON array, sorted
// by name (then id): the bytes json.Marshal writes for what Agents
// returns. dst grows at most once. Each agent is encoded when it changes,
// not here, so this is a copy.
func (s *Store) AppendAgentsJSON(dst []byte, ws string) ([]byte, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return dst, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	dst = slices.Grow(dst, w.rosterLen+len(w.roster)+2)
	dst = append(dst, '[')
	for i, e := range w.roster {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e.json...)
	}
	return append(dst, ']'), nil
}

// Agent returns one agent.
func (s *Store) Agent(ws, id string) (Agent, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return Agent{}, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	a := w.agents[id]
	if a == nil {
		return Agent{}, fmt.Errorf("agent %s: %w", id, ErrNotFound)
	}
	return *a, nil
}

// Conversation returns one conversation.
func (s *Store) Conversation(ws, id string) (Conversation, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return Conversation{}, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	c := w.convs[id]
	if c == nil {
		return Conversation{}, fmt.Errorf("conversation %s: %w", id, ErrNotFound)
	}
	return c.Conversation, nil
}

// Head is the workspace's last event sequence number (0 if none or unknown).
func (s *Store) Head(ws string) uint64 {
	w, err := s.workspace(ws)
	if err != nil {
		return 0
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.rec.Head
}

// List limits.
const (
	defaultListLimit = 50
	maxListLimit     = 500
)

// List returns one page of a queue, filtered by owner, newest activity
// first. The page, its counts and Seq come from one consistent state: every
// event up to Seq is reflected, none after.
func (s *Store) List(ws string, q ListQuery) (Page, error) {
	if !q.Queue.Valid() {
		return Page{}, invalid("queue", "must be new, pending or resolved")
	}
	if q.Limit == 0 {
		q.Limit = defaultListLimit
	}
	if q.Limit < 0 || q.Limit > maxListLimit {
		return Page{}, invalid("limit", "must be between 1 and %d", maxListLimit)
	}
	switch q.Filter.Kind {
	case "":
		q.Filter.Kind = FilterAll
	case FilterAll, FilterUnowned, FilterAgents:
	case FilterMine, FilterOthers:
		if q.Filter.Me == "" {
			return Page{}, invalid("filter", "%s needs the asking agent", q.Filter.Kind)
		}
	default:
		return Page{}, invalid("filter", "must be all, unowned, mine, others or agents")
	}
	var after *ientry
	if q.Cursor != "" {
		e, err := decodeCursor(q.Cursor)
		if err != nil {
			return Page{}, err
		}
		after = &e
	}
	w, err := s.workspace(ws)
	if err != nil {
		return Page{}, err
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	idx := w.queues[queueIdx(q.Queue)]
	entries, more := idx.page(q.Filter, after, q.Limit, func(id string) string { return w.convs[id].Owner })
	p := Page{Items: make([]Conversation, len(entries)), Counts: idx.counts(q.Filter), Seq: w.rec.Head}
	for i, e := range entries {
		p.Items[i] = w.convs[e.id].Conversation
	}
	if more {
		p.Next = encodeCursor(entries[len(entries)-1])
	}
	return p, nil
}

// Notifications returns the agent's unread notifications, grouped.
func (s *Store) Notifications(ws, agent string) (NotificationGroup, error) {
	w, err := s.workspace(ws)
	if err != nil {
		return NotificationGroup{}, err
	}
	w.mu.RLock()
	if w.agents[agent] == nil {
		w.mu.RUnlock()
		return NotificationGroup{}, fmt.Errorf("agent %s: %w", agent, ErrNotFound)
	}
	g := groupNotifications(w.unread[agent])
	w.mu.RUnlock()
	return g, nil
}

// view runs fn in a Badger read transaction unless the store is closed.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.closed.Load() {
		return fmt.Errorf("%w: closed", ErrUnavailable)
	}
	return s.db.View(fn)
}

// History returns a conversation's audit trail, oldest first.
func (s *Store) History(ws, conv string) ([]AuditEntry, error) {
	if _, err := s.Conversation(ws, conv); err != nil {
		return nil, err
	}
	out := []AuditEntry{}
	err := s.view(func(txn *badger.Txn) error {
		return scan(txn, prefix(kindHistory, ws, conv), false, func(_, v []byte) (bool, error) {
			a, err := decodeAudit(v)
			out = append(out, a)
			return true, err
		})
	})
	return out, err
}

// Messages returns up to limit of a conversation's latest messages, newest
// last (limit <= 0: all).
func (s *Store) Messages(ws, conv string, limit int) ([]Message, error) {
	if _, err := s.Conversation(ws, conv); err != nil {
		return nil, err
	}
	type ordered struct {
		m   Message
		ord uint64
	}
	var all []ordered
	err := s.view(func(txn *badger.Txn) error {
		return scan(txn, prefix(kindMessage, ws, conv), false, func(_, v []byte) (bool, error) {
			m, ord, err := decodeMessage(v)
			all = append(all, ordered{m, ord})
			return true, err
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all, func(a, b ordered) int { return int(a.ord) - int(b.ord) })
	if limit > 0 && len(all) > limit {
		all = all[len(all)-limit:]
	}
	out := make([]Message, len(all))
	for i, o := range all {
		out[i] = o.m
	}
	return out, nil
}

// AdminLog returns the workspace's latest admin log entries, newest first
// (limit <= 0: 100).
func (s *Store) AdminLog(ws string, limit int) ([]AdminLogEntry, error) {
	if _, err := s.workspace(ws); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = 100
	}
	out := []AdminLogEntry{}
	err := s.view(func(txn *badger.Txn) error {
		return scan(txn, prefix(kindAdminLog, ws), true, func(_, v []byte) (bool, error) {
			l, err := decodeAdminLog(v)
			out = append(out, l)
			return len(out) < limit, err
		})
	})
	return out, err
}

// scan calls fn for every key with prefix p, in key order (or reversed),
// until fn returns false or an error.
func scan(txn *badger.Txn, p []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	o := badger.DefaultIteratorOptions
	o.Prefix = p
	o.Reverse = reverse
	it := txn.NewIterator(o)
	defer it.Close()
	start := p
	if reverse {
		// Seek in reverse lands on the last key <= start: start past every
		// key with the prefix.
		start = append(bytes.Clone(p), 0xff)
	}
	for it.Seek(start); it.ValidForPrefix(p); it.Next() {
		var more bool
		err := it.Item().Value(func(v []byte) error {
			var err error
			more, err = fn(it.Item().Key(), v)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// badgerLogger sends Badger's log lines to slog; its info lines are chatty,
// so they go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {}

// errClosed is what callers of a closed store get.
var errClosed = fmt.Errorf("%w: closed", ErrUnavailable)

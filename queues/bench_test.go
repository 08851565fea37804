package queues

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"golang.org/x/sync/errgroup"
)

// openDurable opens a store on a temp dir with fsync on every commit, as
// cmd runs it.
func openDurable(b *testing.B) *Store {
	b.Helper()
	s, err := Open(Options{Dir: b.TempDir(), SyncWrites: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// seedAssign creates the agents and n conversations to assign.
func seedAssign(b *testing.B, s *Store, n int) {
	b.Helper()
	ctx := context.Background()
	for _, a := range []Actor{alice, bob} {
		if _, err := s.EnsureAgent(ctx, ws, Agent{ID: a.ID, Name: a.Name, Role: a.Role}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range n {
		if _, err := s.Inbound(ctx, ws, Inbound{Conversation: fmt.Sprintf("c%d", i), MessageID: "m",
			Channel: "chat", Customer: "x"}); err != nil {
			b.Fatal(err)
		}
	}
}

// assignLoop flips conversation conv between alice and bob, each change
// conditional on the version the previous one returned.
type assignLoop struct {
	s       *Store
	conv    string
	version uint64
	n       int
}

func (l *assignLoop) next(b *testing.B) {
	owner := "alice"
	if l.n%2 == 1 {
		owner = "bob"
	}
	l.n++
	r, err := l.s.Assign(context.Background(), ws, carol, l.conv, owner, l.version)
	if err != nil {
		b.Error(err)
		return
	}
	l.version = r.Conv.Version
}

// BenchmarkAssignDurableSingle: one writer, so every ownership change pays
// its own fsync.
func BenchmarkAssignDurableSingle(b *testing.B) {
	s := openDurable(b)
	seedAssign(b, s, 1)
	l := &assignLoop{s: s, conv: "c0", version: 1}
	start := time.Now()
	n := 0
	for b.Loop() {
		l.next(b)
		n++
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "changes/s")
}

// BenchmarkAssignDurable64: 64 concurrent writers, each on its own
// conversation; group commit shares each fsync among the waiting writers.
func BenchmarkAssignDurable64(b *testing.B) {
	const writers = 64
	s := openDurable(b)
	seedAssign(b, s, writers)
	b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var id atomic.Int64
	start := time.Now()
	var total atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		l := &assignLoop{s: s, conv: fmt.Sprintf("c%d", (id.Add(1)-1)%writers), version: 1}
		n := 0
		for pb.Next() {
			l.next(b)
			n++
		}
		total.Add(int64(n))
	})
	b.ReportMetric(float64(total.Load())/time.Since(start).Seconds(), "changes/s")
}

// BenchmarkList100k: one page of a 100,000-conversation queue.
func BenchmarkList100k(b *testing.B) {
	w := newWorkspace(ws, wsRecord{Settings: DefaultSettings()})
	fill(w, 100000)
	s := &Store{wss: map[string]*workspace{ws: w}}
	mid, err := s.List(ws, ListQuery{Queue: QueueNew, Limit: 500})
	if err != nil {
		b.Fatal(err)
	}
	for _, q := range []struct {
		name string
		q    ListQuery
	}{
		{"all/first", ListQuery{Queue: QueueNew}},
		{"all/deep", ListQuery{Queue: QueueNew, Cursor: mid.Next}},
		{"mine", ListQuery{Queue: QueueNew, Filter: Filter{Kind: FilterMine, Me: "a3"}}},
		{"others", ListQuery{Queue: QueueNew, Filter: Filter{Kind: FilterOthers, Me: "a3"}}},
		{"agents3", ListQuery{Queue: QueueNew, Filter: Filter{Kind: FilterAgents, Agents: []string{"a1", "a2", "a3"}}}},
	} {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if p, err := s.List(ws, q.q); err != nil || len(p.Items) != 50 {
					b.Fatalf("got %d items, %v", len(p.Items), err)
				}
			}
		})
	}
}

// BenchmarkOpen1M: start-up with 1,000,000 stored conversations. The data
// is written once, straight to Badger in the store's own record format,
// outside the timed loop.
func BenchmarkOpen1M(b *testing.B) {
	if testing.Short() {
		b.Skip("writes 1,000,000 conversations")
	}
	const n = 1000000
	dir := b.TempDir()
	writeConvs(b, dir, n)
	for b.Loop() {
		s, err := Open(Options{Dir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if st := s.Stats(); st.Conversations[QueueNew].Owned+st.Conversations[QueueNew].Unowned+
			st.Conversations[QueuePending].Unowned+st.Conversations[QueuePending].Owned+
			st.Conversations[QueueResolved].Unowned != n {
			b.Fatalf("loaded %+v", st)
		}
		s.Close()
	}
}

// writeConvs writes n conversations over 10 workspaces with 20 agents each:
// 60% new, 25% pending (a tenth of them with a boomerang), 15% resolved.
func writeConvs(b *testing.B, dir string, n int) {
	b.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	set := func(k, v []byte) {
		if err := wb.Set(k, v); err != nil {
			b.Fatal(err)
		}
	}
	base := t0.Add(-24 * time.Hour)
	const workspaces, agents = 10, 20
	for w := range workspaces {
		name := fmt.Sprintf("ws%d", w)
		rec := wsRecord{Settings: DefaultSettings(), Head: uint64(n / workspaces)}
		set(workspaceKey(name), encodeWorkspace(&rec))
		for a := range agents {
			ag := Agent{ID: fmt.Sprintf("agent%d", a), Name: fmt.Sprintf("Agent %d", a), Role: RoleAgent,
				Status: StatusOffline, StatusSince: base, OfflineSince: base}
			set(agentKey(name, ag.ID), encodeAgent(&ag))
		}
	}
	for i := range n {
		name := fmt.Sprintf("ws%d", i%workspaces)
		at := base.Add(time.Duration(i) * time.Millisecond)
		c := convRec{Conversation: Conversation{ID: fmt.Sprintf("conv-%08d", i), Channel: "email",
			Customer: fmt.Sprintf("customer-%d@example.com", i), Subject: "Order question",
			Queue: QueueNew, Version: 3, CreatedAt: at, LastActivity: at,
			Preview: "Hello, I have a question about my order, it has not arrived yet"}, messages: 2, enteredNew: at}
		switch r := i % 20; {
		case r < 12:
			if r%2 == 0 {
				c.Owner, c.OwnerSince = fmt.Sprintf("agent%d", i%agents), at
			}
		case r < 17:
			c.Queue = QueuePending
			c.Owner, c.OwnerSince = fmt.Sprintf("agent%d", i%agents), at
			if r == 12 {
				// In the future, so Open has nothing to fire.
				c.Boomerang = time.Now().Add(24*time.Hour + time.Duration(i)*time.Second).UTC()
				set(timerKey(c.Boomerang, name, timerBoomerang, c.ID), nil)
			}
		default:
			c.Queue = QueueResolved
		}
		set(convKey(name, c.ID), encodeConv(&c))
	}
	if err := wb.Flush(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReconcile10k: one reconciliation pass over 1,000 workspaces of
// 10 online agents each, with nothing to do. full is the pass on the
// committer (every change waits behind it); scan is the read-locked pass
// that Run makes instead, which finds nothing and so never asks the
// committer.
func BenchmarkReconcile10k(b *testing.B) {
	s := openDurable(b)
	ctx := context.Background()
	// Seed from 50 writers at once, so the commits share their fsyncs.
	var g errgroup.Group
	g.SetLimit(50)
	for w := range 1000 {
		name := fmt.Sprintf("w%d", w)
		g.Go(func() error {
			for a := range 10 {
				id := fmt.Sprintf("a%d", a)
				if _, err := s.EnsureAgent(ctx, name, Agent{ID: id, Name: id, Role: RoleAgent}); err != nil {
					return err
				}
				if _, err := s.ApplyPresence(ctx, name, PresenceUpdate{Agent: id, Status: StatusOnline, Reason: "connect"}); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.Run("full", func(b *testing.B) {
		for b.Loop() {
			if _, err := do(s, ctx, func(b *batch) (int, error) { return b.reconcile(nil), nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if only := s.reconcileCandidates(); only != nil {
				b.Fatalf("candidates %v, want none", only)
			}
		}
	})
}

// BenchmarkAgents100: the roster of a workspace of 100 agents, sorted by
// name: as records (Agents), and as the JSON every hello copies
// (AppendAgentsJSON).
func BenchmarkAgents100(b *testing.B) {
	s, err := Open(Options{InMemory: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for i := range 100 {
		id := fmt.Sprintf("a%d", (i*37)%100) // not in name order
		if _, err := s.EnsureAgent(ctx, ws, Agent{ID: id, Name: "Agent " + id, Role: RoleAgent}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("records", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if a, err := s.Agents(ws); err != nil || len(a) != 100 {
				b.Fatal(len(a), err)
			}
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for b.Loop() {
			if buf, err = s.AppendAgentsJSON(buf[:0], ws); err != nil || len(buf) < 100*64 {
				b.Fatal(len(buf), err)
			}
		}
	})
}

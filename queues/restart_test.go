package queues

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestRestartRecovery: a boomerang and a grace deadline armed before a
// shutdown are both overdue at the next start-up. Open applies each exactly
// once, Remove Ownership included, and a further restart changes nothing.
func TestRestartRecovery(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	ctx := context.Background()
	open := func() *Store {
		t.Helper()
		s, err := Open(Options{Dir: dir, SyncWrites: true, Now: clk.Now})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return s
	}

	s := open()
	f := &fixture{t: t, s: s, clk: clk, pub: &recorder{}, ctx: ctx}
	for _, a := range []Actor{admin, alice, bob} {
		f.agent(a)
	}
	f.removeOwnership(true)
	f.online(alice, bob)
	f.inbound("swept")
	f.assign(bob, "swept", "alice")
	f.inbound("boomer")
	f.assign(bob, "boomer", "bob")
	f.move(bob, "boomer", QueuePending)
	boomAt := clk.Now().Add(10 * time.Minute)
	f.boomerang("boomer", boomAt)
	grace := clk.Now().Add(60 * time.Second)
	if _, err := s.ApplyPresence(ctx, ws, PresenceUpdate{Agent: "alice", Status: StatusOnline, Reason: "last_disconnect", GraceDeadline: grace}); err != nil {
		t.Fatal(err)
	}
	head := s.Head(ws)
	historyBefore := map[string]int{}
	for _, id := range []string{"swept", "boomer"} {
		h, _ := s.History(ws, id)
		historyBefore[id] = len(h)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	clk.Advance(time.Hour)
	s = open()
	f.s = s

	// Alice's grace ran out while the hub was down: offline, and her new
	// conversation swept. Bob's boomerang fired: back to new, Bob online so
	// he keeps it.
	a, _ := s.Agent(ws, "alice")
	if a.Status != StatusOffline || a.StatusReason != "grace_expired" || !a.GraceDeadline.IsZero() {
		t.Errorf("alice: got %+v", a)
	}
	f.wantOwner("swept", "")
	f.wantQueue("boomer", QueueNew)
	f.wantOwner("boomer", "bob")
	evs, complete, err := s.EventsSince(ws, head, 100)
	if err != nil || !complete {
		t.Fatalf("EventsSince: %v complete=%v", err, complete)
	}
	got := kinds(evs)
	want := []string{"presence/grace_expired", "conversation/logout", "conversation/boomerang"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("events at start-up: got %v, want %v", got, want)
	}
	for _, e := range evs {
		if e.Kind == EventPresence && !e.Presence.LastSeen.Equal(grace.Add(-60*time.Second)) {
			t.Errorf("last seen: got %v, want %v", e.Presence.LastSeen, grace.Add(-60*time.Second))
		}
	}
	h, _ := s.History(ws, "swept")
	if len(h) != historyBefore["swept"]+1 || h[len(h)-1].Reason != ReasonLogout || h[len(h)-1].From != "alice" {
		t.Errorf("swept history: got %+v", h)
	}
	h, _ = s.History(ws, "boomer")
	if len(h) != historyBefore["boomer"]+1 || h[len(h)-1].Reason != ReasonBoomerang || h[len(h)-1].Kind != AuditQueue {
		t.Errorf("boomer history: got %+v", h)
	}
	// Everything else came back too.
	if set, _ := s.Settings(ws); !set.RemoveOwnership || set.OfflineGrace != 60 {
		t.Errorf("settings: got %+v", set)
	}
	if g, _ := s.Notifications(ws, "alice"); g.Total != 1 || g.Items[0].Conversation != "swept" {
		t.Errorf("notifications: got %+v", g)
	}
	if p, _ := s.List(ws, ListQuery{Queue: QueueNew}); len(p.Items) != 2 || p.Items[0].ID != "boomer" || p.Counts.Unowned != 1 {
		t.Errorf("list: got %+v", p)
	}
	if msgs, _ := s.Messages(ws, "swept", 0); len(msgs) != 1 {
		t.Errorf("messages: got %d", len(msgs))
	}
	head2 := s.Head(ws)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A second restart finds nothing more to do.
	clk.Advance(time.Hour)
	s = open()
	defer s.Close()
	f.s = s
	if s.Head(ws) != head2 {
		t.Errorf("second restart emitted %d events", s.Head(ws)-head2)
	}
	if n := f.reconcile(); n != 0 {
		t.Errorf("reconcile after restart changed %d", n)
	}
	if h2, _ := s.History(ws, "swept"); len(h2) != historyBefore["swept"]+1 {
		t.Errorf("history grew on the second restart: %d entries", len(h2))
	}
	// The counters survived: new events continue the sequence.
	r := f.inbound("later")
	if r.Seq != head2+1 {
		t.Errorf("first seq after restart: got %d, want %d", r.Seq, head2+1)
	}
}

// Lowering EventLogSize between runs trims the log at start-up.
func TestRestartTrimsEventLog(t *testing.T) {
	dir := t.TempDir()
	open := func(size int) *Store {
		s, err := Open(Options{Dir: dir, EventLogSize: size})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open(100)
	for i := range 30 {
		if _, err := s.Inbound(context.Background(), ws, Inbound{Conversation: "c", MessageID: string(rune('a' + i)), Channel: "chat", Customer: "x"}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = open(10)
	defer s.Close()
	if evs, complete, _ := s.EventsSince(ws, 20, 100); !complete || len(evs) != 10 {
		t.Errorf("last 10: got %d complete=%v", len(evs), complete)
	}
	if _, complete, _ := s.EventsSince(ws, 19, 100); complete {
		t.Error("event 20 still resumable after trimming to 10")
	}
	n := 0
	s.view(func(txn *badger.Txn) error {
		return loadKeys(txn, prefix(kindEvent, ws), func([]byte) error { n++; return nil })
	})
	if n != 10 {
		t.Errorf("event log holds %d entries, want 10", n)
	}
}

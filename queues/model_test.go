package queues

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
)

// snapshot is everything a reader can see of a workspace without Badger.
type snapshot struct {
	Settings Settings
	Agents   []Agent
	Convs    []Conversation
	Pages    map[string][]string
	Counts   map[string]Counts
	Notifs   map[string]NotificationGroup
	Head     uint64
}

func takeSnapshot(t *testing.T, s *Store) snapshot {
	t.Helper()
	sn := snapshot{Pages: map[string][]string{}, Counts: map[string]Counts{}, Notifs: map[string]NotificationGroup{}}
	var err error
	if sn.Settings, err = s.Settings(ws); err != nil {
		t.Fatal(err)
	}
	sn.Agents, _ = s.Agents(ws)
	checkRoster(t, s, ws, sn.Agents)
	w, _ := s.workspace(ws)
	w.mu.RLock()
	for _, c := range w.convs {
		sn.Convs = append(sn.Convs, c.Conversation)
	}
	w.mu.RUnlock()
	slices.SortFunc(sn.Convs, func(a, b Conversation) int { return cmpStr(a.ID, b.ID) })
	for _, q := range allQueues {
		for _, fl := range []Filter{{Kind: FilterAll}, {Kind: FilterUnowned}, {Kind: FilterMine, Me: "alice"},
			{Kind: FilterOthers, Me: "alice"}, {Kind: FilterAgents, Agents: []string{"bob", "carol"}}} {
			key := string(q) + "/" + string(fl.Kind)
			var ids []string
			q := ListQuery{Queue: q, Filter: fl, Limit: 7}
			for {
				p, err := s.List(ws, q)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range p.Items {
					ids = append(ids, c.ID)
				}
				sn.Counts[key] = p.Counts
				if p.Next == "" {
					break
				}
				q.Cursor = p.Next
			}
			sn.Pages[key] = ids
		}
	}
	for _, a := range sn.Agents {
		sn.Notifs[a.ID], _ = s.Notifications(ws, a.ID)
	}
	sn.Head = s.Head(ws)
	return sn
}

// checkRoster compares the maintained roster with a brute-force one:
// Agents must be every agent sorted by name then id, and AppendAgentsJSON
// exactly what json.Marshal writes for them.
func checkRoster(t *testing.T, s *Store, ws string, agents []Agent) {
	t.Helper()
	w, _ := s.workspace(ws)
	w.mu.RLock()
	var want []Agent
	for _, a := range w.agents {
		want = append(want, *a)
	}
	length := w.rosterLen
	w.mu.RUnlock()
	slices.SortFunc(want, func(a, b Agent) int {
		if c := cmpStr(a.Name, b.Name); c != 0 {
			return c
		}
		return cmpStr(a.ID, b.ID)
	})
	if !reflect.DeepEqual(agents, want) {
		t.Errorf("Agents:\n got %+v\nwant %+v", agents, want)
	}
	got, err := s.AppendAgentsJSON([]byte("x"), ws)
	if err != nil {
		t.Fatal(err)
	}
	wantJSON, _ := json.Marshal(want)
	if string(got) != "x"+string(wantJSON) {
		t.Errorf("AppendAgentsJSON:\n got %s\nwant x%s", got, wantJSON)
	}
	if n := len(wantJSON) - 2 - max(len(want)-1, 0); length != n {
		t.Errorf("rosterLen %d, want %d", length, n)
	}
}

func cmpStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// checkIndexes compares every list against a brute-force filter and sort
// of the conversations, and the invariants every state must keep.
func checkIndexes(t *testing.T, sn snapshot) {
	t.Helper()
	for _, q := range allQueues {
		var inQ []Conversation
		for _, c := range sn.Convs {
			if c.Queue == q {
				inQ = append(inQ, c)
			}
			if c.Queue == QueueResolved && c.Owner != "" {
				t.Errorf("%s is resolved but owned by %s", c.ID, c.Owner)
			}
			if (c.Owner == "") != c.OwnerSince.IsZero() {
				t.Errorf("%s: owner %q since %v", c.ID, c.Owner, c.OwnerSince)
			}
		}
		slices.SortFunc(inQ, func(a, b Conversation) int {
			if !a.LastActivity.Equal(b.LastActivity) {
				return b.LastActivity.Compare(a.LastActivity)
			}
			return cmpStr(a.ID, b.ID)
		})
		match := map[FilterKind]func(Conversation) bool{
			FilterAll:     func(Conversation) bool { return true },
			FilterUnowned: func(c Conversation) bool { return c.Owner == "" },
			FilterMine:    func(c Conversation) bool { return c.Owner == "alice" },
			FilterOthers:  func(c Conversation) bool { return c.Owner != "" && c.Owner != "alice" },
			FilterAgents:  func(c Conversation) bool { return c.Owner == "bob" || c.Owner == "carol" },
		}
		for kind, m := range match {
			var want []string
			for _, c := range inQ {
				if m(c) {
					want = append(want, c.ID)
				}
			}
			key := string(q) + "/" + string(kind)
			if !slices.Equal(sn.Pages[key], want) {
				t.Errorf("%s: pages give %v, want %v", key, sn.Pages[key], want)
			}
			if sn.Counts[key].Matching != len(want) || sn.Counts[key].Total != len(inQ) {
				t.Errorf("%s: counts %+v, want matching %d of %d", key, sn.Counts[key], len(want), len(inQ))
			}
		}
	}
}

// Random operations from concurrent writers, with the clock moving and
// timers firing: every list must match a brute-force computation, and a
// restart must bring back exactly the same state.
func TestRandomOperationsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	clk := newClock()
	open := func() *Store {
		s, err := Open(Options{Dir: dir, Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	ctx := context.Background()
	agents := []Actor{admin, alice, bob, carol}
	for _, a := range agents {
		if _, err := s.EnsureAgent(ctx, ws, Agent{ID: a.ID, Name: a.Name, Role: a.Role}); err != nil {
			t.Fatal(err)
		}
	}
	on := true
	s.UpdateSettings(ctx, ws, admin, SettingsPatch{RemoveOwnership: &on, DefaultBoomerang: intp(600),
		AutoOwnership: map[string]bool{"chat": true}})

	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		// Ends after its 300 operations.
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range 300 {
				conv := fmt.Sprintf("c%d", rng.IntN(40))
				by := agents[rng.IntN(len(agents))]
				switch rng.IntN(10) {
				case 0, 1:
					s.Inbound(ctx, ws, Inbound{Conversation: conv, MessageID: fmt.Sprintf("w%d-%d", w, i),
						Channel: []string{"chat", "email"}[rng.IntN(2)], Customer: "x", Text: "hi"})
				case 2:
					s.Reply(ctx, ws, by, conv, fmt.Sprintf("r%d-%d", w, i), "ok")
				case 3, 4:
					if c, err := s.Conversation(ws, conv); err == nil {
						s.Assign(ctx, ws, by, conv, []string{"", "alice", "bob", "carol"}[rng.IntN(4)], c.Version)
					}
				case 5:
					s.Move(ctx, ws, by, conv, allQueues[rng.IntN(3)], 0)
				case 6:
					s.SetBoomerang(ctx, ws, by, conv, clk.Now().Add(time.Duration(rng.IntN(900))*time.Second+time.Second), 0)
				case 7:
					st := []Status{StatusOnline, StatusAway, StatusOffline}[rng.IntN(3)]
					var grace time.Time
					if st == StatusOnline && rng.IntN(3) == 0 {
						grace = clk.Now().Add(30 * time.Second)
					}
					s.ApplyPresence(ctx, ws, PresenceUpdate{Agent: agents[1+rng.IntN(3)].ID, Status: st, Reason: "test", GraceDeadline: grace})
				case 9:
					// A rename moves the agent in the roster; names collide
					// so that the id decides the order.
					// Now and then an agent joins mid-run instead.
					a := agents[1+rng.IntN(3)]
					if rng.IntN(4) == 0 {
						a = Actor{ID: []string{"dan", "eve", "fay"}[rng.IntN(3)], Name: "Ann", Role: RoleAgent}
					}
					na := Agent{ID: a.ID, Role: a.Role, Name: []string{a.Name, "Zed", "Ann", "Sam"}[rng.IntN(4)]}
					if rng.IntN(2) == 0 {
						s.EnsureAgent(ctx, ws, na)
					} else {
						s.ConnectAgent(ctx, ws, na) // a new agent comes in online
					}
				case 8:
					clk.Advance(time.Duration(rng.IntN(120)) * time.Second)
					do(s, ctx, func(b *batch) (int, error) { return b.fireDue(), nil })
					// Reconcile as Run does: the scan, then the committer.
					if only := s.reconcileCandidates(); only != nil {
						do(s, ctx, func(b *batch) (int, error) { return b.reconcile(only), nil })
					}
				}
				if i%50 == 0 {
					s.MarkNotificationsRead(ctx, ws, agents[rng.IntN(len(agents))].ID, 0)
				}
			}
		}()
	}
	wg.Wait()
	// Fire what is due now, so the restart has nothing left to fire.
	do(s, ctx, func(b *batch) (int, error) { return b.fireDue(), nil })
	before := takeSnapshot(t, s)
	checkIndexes(t, before)
	if len(before.Convs) < 30 {
		t.Fatalf("only %d conversations: the workload did not run", len(before.Convs))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	after := takeSnapshot(t, s)
	if !reflect.DeepEqual(before, after) {
		for i := range before.Convs {
			if i < len(after.Convs) && before.Convs[i] != after.Convs[i] {
				t.Errorf("conversation %d: before %+v, after %+v", i, before.Convs[i], after.Convs[i])
			}
		}
		t.Fatalf("state differs after restart:\nbefore %+v\nafter  %+v", before.Agents, after.Agents)
	}
	// The event log agrees with the sequence: every event is there once.
	evs, complete, err := s.EventsSince(ws, 0, int(after.Head))
	if err != nil || !complete || uint64(len(evs)) != after.Head {
		t.Fatalf("event log: %d events complete=%v err=%v, head %d", len(evs), complete, err, after.Head)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) {
			t.Fatalf("event %d has seq %d", i, e.Seq)
		}
	}
}

package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// End-to-end: the real store and presence tracker behind a hub, real
// sockets. Presence waits are bounded by the test grace (1 s) plus slack
// for commits under the race detector.

const slack = 3 * time.Second

func isConv(id string) func(eventMsg) bool {
	return func(ev eventMsg) bool {
		return ev.Kind == queues.EventConversation && ev.Conv != nil && ev.Conv.ID == id
	}
}

func isPresence(agent string, to queues.Status) func(eventMsg) bool {
	return func(ev eventMsg) bool {
		return ev.Kind == queues.EventPresence && ev.Presence != nil && ev.Presence.Agent == agent &&
			(to == "" || ev.Presence.To == to)
	}
}

func TestAssignSeenLive(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	c1 := e.inbound("acme", "c1", "email")
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")

	var page subscribePage
	bea.ok("subscribe", map[string]any{"view": "mine", "queue": "new", "filter": map[string]any{"kind": "mine"}}, &page)
	if len(page.Items) != 0 || page.Counts.Total != 1 || page.Counts.Matching != 0 {
		t.Fatalf("bea's first page: got %d items, counts %+v; want none of 1", len(page.Items), page.Counts)
	}
	var res convResult
	al.ok("assign", map[string]any{"conv": "c1", "agent": "bea", "version": c1.Version}, &res)
	if res.Conv.Owner != "bea" || res.Seq == 0 {
		t.Fatalf("assign result: got owner %q seq %d, want bea and a seq", res.Conv.Owner, res.Seq)
	}

	ev := bea.waitEvent("c1 assigned to bea", isConv("c1"))
	// The reply's seq is the change's last event (here the notification).
	if ev.Seq > res.Seq || ev.Conv.Owner != "bea" || ev.Prev == nil || ev.Prev.Owner != "" || ev.Reason != queues.ReasonManualAssign {
		t.Errorf("event: got seq %d owner %q prev %+v reason %s; want seq at most %d, bea, from unowned, manual_assign",
			ev.Seq, ev.Conv.Owner, ev.Prev, ev.Reason, res.Seq)
	}
	if ev.Seq <= page.Seq {
		t.Errorf("event seq %d is not after the page's seq %d", ev.Seq, page.Seq)
	}
	note := bea.waitEvent("notification for bea", func(ev eventMsg) bool { return ev.Kind == queues.EventNotification })
	if note.Notification.Conversation != "c1" || note.Notification.By.ID != "al" {
		t.Errorf("notification: got %+v, want c1 by al", note.Notification)
	}
	// al has no view: conversation events do not reach al, nor does bea's
	// notification.
	never(t, 200*time.Millisecond, func() bool {
		return len(al.events(func(ev eventMsg) bool {
			return ev.Kind == queues.EventConversation || ev.Kind == queues.EventNotification
		})) > 0
	}, "al got a conversation or notification event without a view")
}

func TestLastTabClosedGoesOfflineAfterGrace(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	al.waitEvent("bea online", isPresence("bea", queues.StatusOnline))

	bea.leave()
	left := time.Now()
	ev := al.waitEventWithin(testGrace+slack, "bea offline", isPresence("bea", queues.StatusOffline))
	if took := time.Since(left); took < testGrace-100*time.Millisecond {
		t.Errorf("bea went offline %v after leaving, before the %v grace", took, testGrace)
	}
	if ev.Presence.Reason != "grace_expired" {
		t.Errorf("reason: got %s, want grace_expired", ev.Presence.Reason)
	}
}

// setupOwned gives bea a new and a pending conversation, through bea's own
// socket.
func setupOwned(t *testing.T, e *env, bea *client) {
	t.Helper()
	for _, id := range []string{"c-new", "c-pending"} {
		c := e.inbound("acme", id, "email")
		bea.ok("assign", map[string]any{"conv": id, "agent": "bea", "version": c.Version}, nil)
	}
	bea.ok("move", map[string]any{"conv": "c-pending", "queue": "pending"}, nil)
}

func TestRemoveOwnershipWhenLastTabCloses(t *testing.T) {
	e := newEnv(t)
	on := true
	e.workspace("acme", queues.SettingsPatch{RemoveOwnership: &on})
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	setupOwned(t, e, bea)
	al.ok("subscribe", map[string]any{"view": "new", "queue": "new"}, nil)
	al.ok("subscribe", map[string]any{"view": "pending", "queue": "pending"}, nil)

	bea.leave()
	left := time.Now()
	ev := al.waitEventWithin(testGrace+slack, "c-new unowned", func(ev eventMsg) bool {
		return isConv("c-new")(ev) && ev.Conv.Owner == ""
	})
	t.Logf("c-new unowned %v after bea left (grace %v)", time.Since(left).Round(time.Millisecond), testGrace)
	if ev.Prev == nil || ev.Prev.Owner != "bea" || ev.Conv.Queue != queues.QueueNew {
		t.Errorf("event: got prev %+v, queue %s; want from bea, still in new", ev.Prev, ev.Conv.Queue)
	}
	if got := e.conv("acme", "c-pending"); got.Owner != "bea" || got.Queue != queues.QueuePending {
		t.Errorf("c-pending: got %s owned by %q, want pending owned by bea", got.Queue, got.Owner)
	}
	if evs := al.events(isConv("c-pending")); len(evs) > 0 && evs[len(evs)-1].Conv.Owner != "bea" {
		t.Errorf("al saw c-pending lose its owner: %+v", evs[len(evs)-1].Conv)
	}
}

func TestBoomerangWhileOwnerOfflineLandsUnowned(t *testing.T) {
	e := newEnv(t)
	on := true
	e.workspace("acme", queues.SettingsPatch{RemoveOwnership: &on})
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	setupOwned(t, e, bea)
	al.ok("subscribe", map[string]any{"view": "new", "queue": "new", "filter": map[string]any{"kind": "unowned"}}, nil)

	fire := time.Now().Add(testGrace + 2*time.Second)
	bea.ok("boomerang", map[string]any{"conv": "c-pending", "at": fire.Format(time.RFC3339Nano)}, nil)
	bea.leave()
	eventually(t, testGrace+slack, func() bool { return e.agentStatus("acme", "bea") == queues.StatusOffline },
		"bea not offline")
	if time.Now().Before(fire) {
		if got := e.conv("acme", "c-pending"); got.Owner != "bea" || got.Queue != queues.QueuePending {
			t.Fatalf("before the boomerang: got %s owned by %q, want pending owned by bea", got.Queue, got.Owner)
		}
	}
	ev := al.waitEventWithin(time.Until(fire)+slack, "boomerang brings c-pending back unowned", func(ev eventMsg) bool {
		return isConv("c-pending")(ev) && ev.Conv.Queue == queues.QueueNew
	})
	if ev.Conv.Owner != "" || ev.Reason != queues.ReasonBoomerang || ev.Prev.Owner != "bea" {
		t.Errorf("event: got owner %q reason %s prev %+v; want unowned by boomerang from bea", ev.Conv.Owner, ev.Reason, ev.Prev)
	}
}

func TestAssignToOfflineAgentNotifiesOnNextConnect(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	cy := e.connect("acme", "cy")
	cy.leave()
	eventually(t, testGrace+slack, func() bool { return e.agentStatus("acme", "cy") == queues.StatusOffline }, "cy not offline")

	al := e.connect("acme", "al")
	for _, id := range []string{"c1", "c2", "c3"} {
		c := e.inbound("acme", id, "chat")
		al.ok("assign", map[string]any{"conv": id, "agent": "cy", "version": c.Version}, nil)
	}

	cy = e.connect("acme", "cy")
	n := cy.hello().Notifications
	if n.Total != 3 || len(n.Items) != 3 {
		t.Fatalf("notifications: got total %d with %d items, want 3", n.Total, len(n.Items))
	}
	if len(n.ByWho) != 1 || n.ByWho[0].By.ID != "al" || n.ByWho[0].Count != 3 {
		t.Errorf("grouped: got %+v, want one group of 3 by al", n.ByWho)
	}
	if n.Items[0].Conversation != "c3" {
		t.Errorf("newest first: got %s first, want c3", n.Items[0].Conversation)
	}
	// Listed in hello, so not again as events.
	never(t, 300*time.Millisecond, func() bool {
		return len(cy.events(func(ev eventMsg) bool { return ev.Kind == queues.EventNotification })) > 0
	}, "cy got notification events for notifications hello listed")

	var read readResult
	cy.ok("notifications_read", map[string]any{"up_to": 0}, &read)
	if read.Read != 3 {
		t.Errorf("read: got %d, want 3", read.Read)
	}
}

// An agent's first connection registers them and brings them online in
// one change: the others see one presence event that carries the new
// record, the agent's own hello already says online, and the tracker's
// first transition, which follows, writes nothing more.
func TestFirstConnectIsOneEvent(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	seen := len(al.events(func(eventMsg) bool { return true })) + 1 // and dan's

	dan := e.connect("acme", "dan")
	if me := dan.hello().Me; me.Status != queues.StatusOnline || me.Name != "Dan" {
		t.Errorf("dan's hello: me %+v, want online", me)
	}
	ev := al.waitEvent("dan online", isPresence("dan", queues.StatusOnline))
	if ev.Presence.From != queues.StatusOffline || ev.Presence.Reason != queues.ReasonConnected ||
		ev.Agent == nil || ev.Agent.ID != "dan" || ev.Agent.Name != "Dan" || ev.Agent.Status != queues.StatusOnline {
		t.Errorf("dan's first connect: got presence %+v, record %+v", ev.Presence, ev.Agent)
	}
	never(t, 500*time.Millisecond, func() bool {
		return len(al.events(func(eventMsg) bool { return true })) > seen
	}, "al saw more than one event of dan's first connect")
	if got := e.agentStatus("acme", "dan"); got != queues.StatusOnline {
		t.Errorf("dan: got %s, want online", got)
	}
	if head := e.store.Head("acme"); head != ev.Seq {
		t.Errorf("head %d after dan's first connect, want %d: something more was written", head, ev.Seq)
	}
}

// A valid token whose handshake then fails registers a new agent online for
// a moment; the tracker is told of the connection and its end, so the grace
// takes them offline as for any console that dropped. A request that is no
// WebSocket handshake at all registers them offline, and nobody sees them
// online.
func TestFailedHandshakeOfANewAgentEndsOffline(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")

	get := func(agent string, header http.Header) int {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/ws", nil)
		req.Header = header
		req.Header.Set("Authorization", "Bearer "+token(t, "acme", agent, queues.RoleAgent, time.Hour))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// An upgrade without Sec-WebSocket-Key: Accept refuses it.
	if code := get("eve", http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}, "Sec-Websocket-Version": {"13"}}); code != http.StatusBadRequest {
		t.Errorf("broken handshake: got %d, want 400", code)
	}
	al.waitEvent("eve online", isPresence("eve", queues.StatusOnline))
	al.waitEventWithin(testGrace+3*time.Second, "eve offline after the grace", isPresence("eve", queues.StatusOffline))
	if got := e.agentStatus("acme", "eve"); got != queues.StatusOffline {
		t.Errorf("eve: got %s, want offline", got)
	}

	if code := get("fay", http.Header{}); code == http.StatusSwitchingProtocols {
		t.Fatalf("plain GET: got a socket")
	}
	al.waitEvent("fay registered", func(ev eventMsg) bool {
		return ev.Kind == queues.EventAgent && ev.Agent != nil && ev.Agent.ID == "fay" && ev.Agent.Status == queues.StatusOffline
	})
	never(t, 300*time.Millisecond, func() bool { return len(al.events(isPresence("fay", ""))) > 0 }, "fay was seen online")
}

// lateConnect is a store whose ConnectAgent, for gus, reports a timeout:
// after committing the change (its write outlived the caller's wait), or
// without running it at all.
type lateConnect struct {
	Backend
	committed  bool
	failEnsure bool // EnsureAgent, for gus, fails too
}

func (l *lateConnect) EnsureAgent(ctx context.Context, ws string, a queues.Agent) (queues.Agent, error) {
	if a.ID == "gus" && l.failEnsure {
		return queues.Agent{}, context.DeadlineExceeded
	}
	return l.Backend.EnsureAgent(ctx, ws, a)
}

func (l *lateConnect) ConnectAgent(ctx context.Context, ws string, a queues.Agent) (queues.Agent, bool, error) {
	if a.ID != "gus" {
		return l.Backend.ConnectAgent(ctx, ws, a)
	}
	if l.committed {
		l.Backend.ConnectAgent(ctx, ws, a)
	}
	return queues.Agent{}, false, context.DeadlineExceeded
}

// A first connect whose store call timed out may still have created the
// agent online: the tracker is then told of a connection that opened and
// closed, so the grace takes them offline rather than leaving them online
// for good. If the change never ran, the agent is registered offline and
// nobody sees them online.
func TestTimedOutFirstConnectEndsOffline(t *testing.T) {
	for _, committed := range []bool{true, false} {
		t.Run(fmt.Sprintf("committed=%v", committed), func(t *testing.T) {
			late := &lateConnect{committed: committed}
			e := newEnv(t, func(c *Config) { late.Backend = c.Backend; c.Backend = late })
			e.workspace("acme", queues.SettingsPatch{})
			al := e.connect("acme", "al")

			if code, _ := e.refusal(token(t, "acme", "gus", queues.RoleAgent, time.Hour), nil); code != http.StatusServiceUnavailable {
				t.Errorf("timed-out connect: got %d, want 503", code)
			}
			if committed {
				al.waitEvent("gus online", isPresence("gus", queues.StatusOnline))
				al.waitEventWithin(testGrace+3*time.Second, "gus offline after the grace", isPresence("gus", queues.StatusOffline))
			} else {
				al.waitEvent("gus registered", func(ev eventMsg) bool {
					return ev.Kind == queues.EventAgent && ev.Agent != nil && ev.Agent.ID == "gus"
				})
				never(t, testGrace+time.Second, func() bool { return len(al.events(isPresence("gus", ""))) > 0 }, "gus was seen online")
			}
			if got := e.agentStatus("acme", "gus"); got != queues.StatusOffline {
				t.Errorf("gus: got %s, want offline", got)
			}
		})
	}
}

// A known agent is never made online by the store call of a connect, so
// one that times out (here a rename, the token carrying a new name) leaves
// presence alone, even when the store stays slow: an offline agent stays
// offline, and nobody sees them.
func TestTimedOutConnectOfAKnownAgentChangesNoPresence(t *testing.T) {
	late := &lateConnect{committed: true}
	e := newEnv(t, func(c *Config) { late.Backend = c.Backend; c.Backend = late })
	e.workspace("acme", queues.SettingsPatch{})
	late.failEnsure = true
	if _, err := e.store.EnsureAgent(context.Background(), "acme", queues.Agent{ID: "gus", Name: "Gustav", Role: queues.RoleAgent}); err != nil {
		t.Fatal(err)
	}
	al := e.connect("acme", "al")
	if code, _ := e.refusal(token(t, "acme", "gus", queues.RoleAgent, time.Hour), nil); code != http.StatusServiceUnavailable {
		t.Errorf("timed-out connect: got %d, want 503", code)
	}
	al.waitEvent("gus renamed", func(ev eventMsg) bool {
		return ev.Kind == queues.EventAgent && ev.Agent != nil && ev.Agent.ID == "gus" && ev.Agent.Name == "Gus"
	})
	never(t, testGrace+time.Second, func() bool { return len(al.events(isPresence("gus", ""))) > 0 }, "gus was seen online")
	if got := e.agentStatus("acme", "gus"); got != queues.StatusOffline {
		t.Errorf("gus: got %s, want offline", got)
	}
}

func TestSecondTabKeepsAgentOnline(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	tab1 := e.connect("acme", "bea")
	e.connect("acme", "bea")
	al.waitEvent("bea online", isPresence("bea", queues.StatusOnline))

	tab1.leave()
	never(t, testGrace+time.Second, func() bool {
		return len(al.events(isPresence("bea", queues.StatusOffline))) > 0
	}, "bea went offline with a tab still open")
	if got := e.agentStatus("acme", "bea"); got != queues.StatusOnline {
		t.Errorf("bea: got %s, want online", got)
	}
}

func TestReconnectWithinGraceIsInvisible(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	al.waitEvent("bea online", isPresence("bea", queues.StatusOnline))
	seen := len(al.all())

	bea.leave()
	e.connect("acme", "bea")
	never(t, testGrace+time.Second, func() bool {
		for _, m := range al.all()[seen:] {
			if m.Type == typeEvent && (m.Kind == string(queues.EventPresence) || m.Kind == string(queues.EventAgent)) {
				return true
			}
		}
		return false
	}, "al saw bea's reconnect")
	if got := e.agentStatus("acme", "bea"); got != queues.StatusOnline {
		t.Errorf("bea: got %s, want online", got)
	}
}

func TestResumeReplaysExactlyTheMissedEvents(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	for _, id := range []string{"c1", "c2", "c3"} {
		e.inbound("acme", id, "email")
	}
	vmsg := map[string]any{"view": "v", "queue": "new"}
	al := e.connect("acme", "al")
	al.ok("subscribe", vmsg, nil)
	bea := e.connect("acme", "bea")
	eventually(t, 5*time.Second, func() bool { return al.maxSeq() == e.store.Head("acme") },
		"al has not caught up with the workspace")
	since := al.maxSeq()
	al.conn.CloseNow() // the connection drops
	<-al.done

	// What al misses: every kind of event.
	c1 := e.conv("acme", "c1")
	bea.ok("assign", map[string]any{"conv": "c1", "agent": "al", "version": c1.Version}, nil) // conversation + notification
	bea.ok("move", map[string]any{"conv": "c2", "queue": "pending"}, nil)                     // leaves the view
	e.inbound("acme", "c4", "chat")                                                           // enters the view
	bea.ok("status", map[string]any{"status": "away"}, nil)                                   // presence
	bea.waitEventWithin(5*time.Second, "bea away", isPresence("bea", queues.StatusAway))
	grace := int(testGrace/time.Second) + 1 // a change, so an event
	if _, err := e.store.UpdateSettings(context.Background(), "acme", queues.Actor{ID: "root", Role: queues.RoleAdmin},
		queues.SettingsPatch{OfflineGrace: &grace}); err != nil { // settings
		t.Fatal(err)
	}

	al = e.connect("acme", "al", "since", fmt.Sprint(since))
	h := al.hello()
	if !h.Resumed || h.Resync {
		t.Fatalf("hello: got resumed=%v resync=%v, want a resume", h.Resumed, h.Resync)
	}
	var sub subscribeResumed
	al.ok("subscribe", map[string]any{"view": "v", "queue": "new", "since": since}, &sub)
	if !sub.Resumed {
		t.Fatalf("subscribe with since: got %+v, want resumed", sub)
	}
	// Live after the resume.
	c3 := e.conv("acme", "c3")
	bea.ok("assign", map[string]any{"conv": "c3", "agent": "al", "version": c3.Version}, nil)
	bea.ok("status", map[string]any{"status": "available"}, nil)
	eventually(t, 5*time.Second, func() bool { return al.maxSeq() == e.store.Head("acme") },
		"al has not caught up after resuming")

	// Expected: every event after since that al should see, once.
	all, complete, err := e.store.EventsSince("acme", since, 0)
	if err != nil || !complete {
		t.Fatalf("events since %d: complete=%v err=%v", since, complete, err)
	}
	v := view{queue: queues.QueueNew, filter: queues.Filter{Kind: queues.FilterAll, Me: "al"}}
	var want []uint64
	for i := range all {
		ev := &all[i]
		switch ev.Kind {
		case queues.EventConversation:
			if !v.wants(ev) {
				continue
			}
		case queues.EventNotification:
			if ev.Notification.Agent != "al" {
				continue
			}
		}
		want = append(want, ev.Seq)
	}
	var got []uint64
	for _, raw := range h.Missed {
		got = append(got, seqOf(t, raw))
	}
	for _, raw := range sub.Events {
		got = append(got, seqOf(t, raw))
	}
	for _, ev := range al.events(nil) {
		got = append(got, ev.Seq)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("events after %d:\n got %v\nwant %v", since, got, want)
	}
	kinds := map[queues.EventKind]bool{}
	for _, raw := range h.Missed {
		var ev eventMsg
		json.Unmarshal(raw, &ev)
		kinds[ev.Kind] = true
	}
	for _, k := range []queues.EventKind{queues.EventPresence, queues.EventNotification, queues.EventSettings} {
		if !kinds[k] {
			t.Errorf("hello.missed has no %s event", k)
		}
	}
	if kinds[queues.EventConversation] {
		t.Errorf("hello.missed has conversation events; they resume per view")
	}
}

func seqOf(t *testing.T, raw json.RawMessage) uint64 {
	t.Helper()
	var ev eventMsg
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Type != typeEvent {
		t.Fatalf("not an event: %s", raw)
	}
	return ev.Seq
}

func TestResumeTooOldResyncs(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al", "since", "999999")
	if h := al.hello(); h.Resumed || !h.Resync || len(h.Missed) != 0 {
		t.Errorf("hello with a since the workspace never reached: got resumed=%v resync=%v missed=%d, want a resync",
			h.Resumed, h.Resync, len(h.Missed))
	}
	var page subscribePage
	al.ok("subscribe", map[string]any{"view": "v", "queue": "new", "since": 999999}, &page)
	if !page.Resync {
		t.Errorf("subscribe with an unknown since: got %+v, want a resync page", page)
	}
}

func TestWorkspaceIsolation(t *testing.T) {
	e := newEnv(t)
	e.workspace("x", queues.SettingsPatch{})
	e.workspace("y", queues.SettingsPatch{})
	yc := e.inbound("y", "secret", "email")
	xal := e.connect("x", "al")
	xal.ok("subscribe", map[string]any{"view": "all", "queue": "new"}, nil)
	yann := e.connect("y", "ann")
	yann.ok("subscribe", map[string]any{"view": "all", "queue": "new"}, nil)

	xal.fails("conversation", map[string]any{"conv": "secret"}, codeNotFound)
	xal.fails("assign", map[string]any{"conv": "secret", "agent": "al", "version": yc.Version}, codeNotFound)
	xal.fails("move", map[string]any{"conv": "secret", "queue": "resolved"}, codeNotFound)
	xal.fails("assign", map[string]any{"conv": "nope", "agent": "ann", "version": 1}, codeNotFound)
	if got := e.conv("y", "secret"); got.Owner != "" || got.Queue != queues.QueueNew || got.Version != yc.Version {
		t.Errorf("y's conversation changed: %+v", got)
	}

	// Y's activity reaches Y only.
	yc = e.inbound("y", "secret", "email")
	yann.ok("assign", map[string]any{"conv": "secret", "agent": "ann", "version": yc.Version}, nil)
	yann.waitEvent("ann's assignment", isConv("secret"))
	never(t, 300*time.Millisecond, func() bool {
		return len(xal.events(func(ev eventMsg) bool {
			return ev.Kind != queues.EventPresence || ev.Presence.Agent != "al"
		})) > 0
	}, "al of x received y's events: %v", xal.events(nil))
}

// TestQueuedEventsShareAFrame: events published together reach a client
// packed into one frame.
func TestQueuedEventsShareAFrame(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	eventually(t, 5*time.Second, func() bool { return al.maxSeq() == e.store.Head("acme") }, "al not caught up")
	al.mu.Lock()
	frames, before := al.frames, len(al.msgs)
	al.mu.Unlock()

	head := e.store.Head("acme")
	batch := make([]queues.Event, 50)
	for i := range batch {
		batch[i] = queues.Event{Seq: head + 1 + uint64(i), At: time.Now(), Kind: queues.EventAgent, Actor: queues.System,
			Agent: &queues.Agent{ID: fmt.Sprintf("x%d", i), Name: "X", Role: queues.RoleAgent, Status: queues.StatusOffline}}
	}
	e.hub.Publish("acme", batch)
	eventually(t, 5*time.Second, func() bool { return len(al.all()) == before+len(batch) }, "events not received")
	al.mu.Lock()
	got := al.frames - frames
	al.mu.Unlock()
	if got != 1 {
		t.Errorf("50 events published at once: got %d frames, want 1", got)
	}
	for i, ev := range al.events(nil)[len(al.events(nil))-len(batch):] {
		if ev.Seq != batch[i].Seq {
			t.Fatalf("event %d: got seq %d, want %d", i, ev.Seq, batch[i].Seq)
		}
	}
}

func TestShutdownClosesWithGoingAway(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, c := range []*client{al, bea} {
		if code := c.closed(time.Second); code != websocket.StatusGoingAway {
			t.Errorf("close code: got %d, want 1001", code)
		}
	}
	if n := e.hub.Connections(); n != 0 {
		t.Errorf("connections after shutdown: got %d, want 0", n)
	}
	if err := e.hub.Shutdown(ctx); err != nil {
		t.Errorf("second shutdown: %v", err)
	}
	if code, _ := e.refusal(token(t, "acme", "al", queues.RoleAgent, time.Hour), nil); code != 503 {
		t.Errorf("connecting after shutdown: got HTTP %d, want 503", code)
	}
}

// waitEventWithin is waitEvent with its own bound.
func (c *client) waitEventWithin(d time.Duration, what string, f func(eventMsg) bool) eventMsg {
	c.t.Helper()
	var found eventMsg
	eventually(c.t, d, func() bool {
		if evs := c.events(f); len(evs) > 0 {
			found = evs[0]
			return true
		}
		return false
	}, "no event: %s", what)
	return found
}

// TestShutdownIsBounded: a client that never reads cannot answer the close
// handshake; Shutdown gives up at its deadline and aborts the socket.
func TestShutdownIsBounded(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	e.connect("acme", "al")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deaf, _, err := websocket.Dial(ctx, e.wsURL(token(t, "acme", "bea", queues.RoleAgent, time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer deaf.CloseNow()
	eventually(t, 5*time.Second, func() bool { return e.hub.Connections() == 2 }, "not connected")

	sctx, scancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer scancel()
	start := time.Now()
	if err := e.hub.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("shutdown: got %v, want the deadline", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("shutdown took %v with a 300ms deadline", took)
	}
	eventually(t, 2*time.Second, func() bool { return e.hub.Connections() == 0 }, "sockets still open after the deadline")
}

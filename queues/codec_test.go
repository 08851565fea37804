package queues

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestCodecRoundTrip(t *testing.T) {
	at := t0.Add(123456789 * time.Nanosecond)
	set := DefaultSettings()
	set.RemoveOwnership, set.RemoveOwnershipSince = true, at
	set.AutoOwnership = map[string]bool{"chat": true, "email": true}
	ws := wsRecord{Settings: set, Head: 1 << 40, AuditSeq: 7, NotifSeq: 8, AdminSeq: 9}
	if got, err := decodeWorkspace(encodeWorkspace(&ws)); err != nil || fmt.Sprint(got) != fmt.Sprint(ws) {
		t.Errorf("workspace: got %+v %v", got, err)
	}
	a := Agent{ID: "a", Name: "Ä", Role: RoleAdmin, Status: StatusAway, StatusReason: "idle", StatusSince: at,
		ManualAway: true, GraceDeadline: at.Add(time.Minute)}
	if got, err := decodeAgent(encodeAgent(&a)); err != nil || got != a {
		t.Errorf("agent: got %+v %v", got, err)
	}
	c := convRec{Conversation: Conversation{ID: "c", Channel: "chat", Customer: "x", Subject: "s", Queue: QueuePending,
		Owner: "a", OwnerSince: at, Version: 9, Boomerang: at.Add(time.Hour), CreatedAt: at, LastActivity: at, Preview: "p"},
		enteredNew: at, messages: 4}
	var gotC convRec
	if err := decodeConv(encodeConv(&c), &gotC); err != nil || gotC != c {
		t.Errorf("conversation: got %+v %v", gotC, err)
	}
	au := AuditEntry{Seq: 3, At: at, Kind: AuditOwner, From: "a", FromName: "A", To: "b", ToName: "B", Actor: alice, Reason: ReasonLogout}
	if got, err := decodeAudit(encodeAudit(&au)); err != nil || got != au {
		t.Errorf("audit: got %+v %v", got, err)
	}
	m := Message{ID: "<x@y>", At: at, From: service, Text: "hi", Inbound: true}
	if got, ord, err := decodeMessage(encodeMessage(&m, 5)); err != nil || got != m || ord != 5 {
		t.Errorf("message: got %+v %d %v", got, ord, err)
	}
	n := Notification{Seq: 2, At: at, Agent: "a", Conversation: "c", Customer: "x", Subject: "s", By: bob}
	if got, err := decodeNotification(encodeNotification(&n)); err != nil || got != n {
		t.Errorf("notification: got %+v %v", got, err)
	}
	l := AdminLogEntry{Seq: 1, At: at, Actor: admin, Field: "f", Old: "1", New: "2"}
	if got, err := decodeAdminLog(encodeAdminLog(&l)); err != nil || got != l {
		t.Errorf("admin log: got %+v %v", got, err)
	}
	// Every truncation of a record is refused, never half-read.
	full := encodeConv(&c)
	for i := range len(full) - 1 {
		var x convRec
		if err := decodeConv(full[:i], &x); !errors.Is(err, errCorrupt) {
			t.Fatalf("conversation cut at %d: got %v, want errCorrupt", i, err)
		}
	}
	if _, err := decodeAgent([]byte{9, 1, 2}); !errors.Is(err, errCorrupt) {
		t.Errorf("unknown format: got %v", err)
	}
}

func TestKeys(t *testing.T) {
	at := t0.Add(time.Second)
	k := timerKey(at, "acme", timerGrace, "alice")
	d, ws, kind, id, ok := parseTimerKey(k)
	if !ok || !d.Equal(at) || ws != "acme" || kind != timerGrace || id != "alice" {
		t.Errorf("timer key: got %v %q %c %q %v", d, ws, kind, id, ok)
	}
	for _, bad := range [][]byte{[]byte("t/"), []byte("x/12345678/a/b/c"), append(timerKey(at, "", 'b', "")[:11], "acme"...)} {
		if _, _, _, _, ok := parseTimerKey(bad); ok {
			t.Errorf("parsed malformed key %q", bad)
		}
	}
	if a, b := historyKey("w", "c", 255), historyKey("w", "c", 256); string(a) >= string(b) {
		t.Error("sequence keys do not sort numerically")
	}
	if seqOf(eventKey("w", 77)) != 77 || wsOf(convKey("acme", "c1")) != "acme" || lastPart(agentKey("w", "bob")) != "bob" {
		t.Error("key helpers")
	}
}

// A sweep too big for one Badger transaction is split and still lands
// whole.
func TestLargeSweepSplitsTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 6,000 conversations")
	}
	f := newFixture(t)
	f.removeOwnership(true)
	f.online(alice)
	const n = 6000
	for i := range n {
		id := fmt.Sprintf("c%d", i)
		if _, err := f.s.Inbound(f.ctx, ws, Inbound{Conversation: id, MessageID: "m", Channel: "chat", Customer: "x"}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.s.Assign(f.ctx, ws, alice, id, "alice", 1); err != nil {
			t.Fatal(err)
		}
	}
	f.clk.Advance(time.Second)
	head := f.s.Head(ws)
	f.logout(alice)
	p, _ := f.s.List(ws, ListQuery{Queue: QueueNew, Filter: Filter{Kind: FilterUnowned}})
	if p.Counts.Unowned != n || f.s.Head(ws) != head+1+n {
		t.Errorf("got %d unowned, head +%d, want %d and +%d", p.Counts.Unowned, f.s.Head(ws)-head, n, n+1)
	}
	if err := f.s.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

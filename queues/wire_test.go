package queues

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// The hand-written wire encoding must equal encoding/json's, byte for byte,
// for every kind of event and every awkward string.
func TestWireMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 0, 0, 123400000, time.UTC)
	odd := "a\"b\\c<d>e&f\x00\x1f\b\f\n\r\t é\u2028\u2029\xff\xfe end"
	conv := Conversation{ID: "c1", Channel: "chat", Customer: odd, Subject: odd, Queue: QueueNew, Owner: "alice",
		OwnerSince: at, Version: 7, Boomerang: at.Add(time.Hour), CreatedAt: at, LastActivity: at, Preview: odd}
	agent := Agent{ID: "alice", Name: odd, Role: RoleAgent, Status: StatusOffline, StatusReason: "logout",
		StatusSince: at, ManualAway: true, OfflineSince: at, GraceDeadline: at}
	set := DefaultSettings()
	set.RemoveOwnership, set.RemoveOwnershipSince = true, at
	set.AutoOwnership = map[string]bool{"email": true, "chat": false}
	noMap := set
	noMap.AutoOwnership = nil
	events := []Event{
		{Seq: 1, At: at, Kind: EventConversation, Actor: alice, Reason: ReasonManualAssign, Conv: &conv,
			Prev: &ConvState{Queue: QueuePending, Owner: "bob"}},
		{Seq: 2, At: at, Kind: EventConversation, Actor: service, Reason: ReasonCreated, Conv: &Conversation{ID: "c2",
			Queue: QueueNew, Version: 1, CreatedAt: at, LastActivity: at}},
		{Seq: 3, At: at, Kind: EventConversation, Actor: System, Prev: &ConvState{Queue: QueueNew}},
		{Seq: 4, At: at, Kind: EventPresence, Actor: System, Reason: "grace_expired",
			Presence: &PresenceChange{Agent: "alice", From: StatusOnline, To: StatusOffline, Reason: "grace_expired", LastSeen: at},
			Agent:    &agent},
		{Seq: 5, At: at, Kind: EventPresence, Presence: &PresenceChange{Agent: "a", From: StatusOffline, To: StatusOnline},
			Agent: &Agent{ID: "a", StatusSince: at}},
		{Seq: 6, At: at, Kind: EventSettings, Actor: admin, Settings: &set},
		{Seq: 7, At: at, Kind: EventSettings, Actor: admin, Settings: &noMap},
		{Seq: 8, At: at, Kind: EventNotification, Actor: bob, Reason: ReasonManualAssign,
			Notification: &Notification{Seq: 3, At: at, Agent: "alice", Conversation: "c1", Customer: odd, Subject: odd, By: bob}},
		{Seq: 9, At: at, Kind: EventNotification, Notification: &Notification{Seq: 4, At: at, Agent: "a", Conversation: "c"}},
		{Seq: 10, At: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), Kind: EventAgent, Actor: Actor{Name: odd}, Agent: &Agent{}},
		{},
	}
	for _, ev := range events {
		want, err := json.Marshal(wireEvent{Type: "event", Event: &ev})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendEventWire(nil, &ev); !bytes.Equal(got, want) {
			t.Errorf("event %d:\ngot  %s\nwant %s", ev.Seq, got, want)
		}
	}

	// The exported encoders the hub uses, on their own.
	same := func(what string, v any, got []byte) {
		t.Helper()
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\ngot  %s\nwant %s", what, got, want)
		}
	}
	for _, c := range []Conversation{conv, {}, {ID: "c2", Queue: QueueNew, Version: 1, CreatedAt: at, LastActivity: at}} {
		same("conversation "+c.ID, c, AppendConversationJSON(nil, &c))
	}
	for _, a := range []Agent{agent, {}, {ID: "a", Name: "A", Role: RoleAdmin, Status: StatusOnline, StatusSince: at}} {
		same("agent "+a.ID, a, AppendAgentJSON(nil, &a))
	}
	for _, st := range []Settings{set, noMap, DefaultSettings(), {}} {
		same("settings", st, AppendSettingsJSON(nil, &st))
	}
}

func FuzzWireString(f *testing.F) {
	for _, s := range []string{"", "plain", "<&>", "\x00\x7f\xc3", "\u2028x\u2029", "é\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); !bytes.Equal(got, want) {
			t.Errorf("%q: got %s, want %s", s, got, want)
		}
	})
}

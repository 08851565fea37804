package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		frame string
		id    string // the id a reply would echo
		code  string // "" for a good request
	}{
		{`{"id":7,"op":"settings"}`, `7`, ""},
		{`{"id":"a-1","op":"settings"}`, `"a-1"`, ""},
		{` {"id":-1.5,"op":"x"} `, `-1.5`, ""},
		{`not json`, `null`, codeBadRequest},
		{`{"id":1,"op":`, `null`, codeBadRequest},
		{`[1,2]`, `null`, codeBadRequest},
		{`"hello"`, `null`, codeBadRequest},
		{`{"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":null,"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":{"a":1},"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":true,"op":"settings"}`, `null`, codeBadRequest},
		{`{"id":3}`, `3`, codeBadRequest},
		{`{"id":3,"op":5}`, `3`, codeBadRequest},
		{`{"id":3,"op":"assign","version":"six"}`, `3`, codeBadRequest},
		{`{"id":3,"op":"subscribe","filter":"mine"}`, `3`, codeBadRequest},
	}
	for _, tt := range tests {
		req, id, rerr := decodeRequest([]byte(tt.frame))
		if string(id) != tt.id {
			t.Errorf("%s: reply id: got %s, want %s", tt.frame, id, tt.id)
		}
		switch {
		case tt.code == "" && rerr != nil:
			t.Errorf("%s: got error %v, want a request", tt.frame, rerr)
		case tt.code == "" && req == nil:
			t.Errorf("%s: got no request", tt.frame)
		case tt.code != "" && (rerr == nil || rerr.Code != tt.code):
			t.Errorf("%s: got %v, want %s", tt.frame, rerr, tt.code)
		}
	}
}

func TestErrorFor(t *testing.T) {
	tests := []struct {
		err    error
		code   string
		field  string
		client bool
	}{
		{fmt.Errorf("conversation c9: %w", queues.ErrNotFound), codeNotFound, "", true},
		{&queues.StaleError{Conversation: "c7", Want: 4, Have: 5}, codeConflict, "", true},
		{fmt.Errorf("boomerang: %w", queues.ErrConflict), codeConflict, "", true},
		{fmt.Errorf("x: %w", queues.ErrForbidden), codeForbidden, "", true},
		{fmt.Errorf("wrapped: %w", &queues.InvalidError{Field: "text", Reason: "too long"}), codeInvalid, "text", true},
		{fmt.Errorf("commit: %w", queues.ErrUnavailable), codeUnavailable, "", false},
		{invalidField("view", "required"), codeInvalid, "view", true},
		{errors.New("boom"), codeInternal, "", false},
	}
	for _, tt := range tests {
		re, client := errorFor(tt.err)
		if re.Code != tt.code || re.Field != tt.field || client != tt.client {
			t.Errorf("%v: got %s field %q client %v, want %s field %q client %v",
				tt.err, re.Code, re.Field, client, tt.code, tt.field, tt.client)
		}
	}
}

// The hand-written hello and conversation reply are the bytes
// encoding/json produces, so the protocol cannot drift from the types.
func TestHandEncodingMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 3, 2, 9, 0, 0, 123400000, time.UTC)
	odd := "a\"b\\c<d>e&f\x00\x1f é\u2028\xff end"
	agents := []queues.Agent{
		{ID: "alice", Name: odd, Role: queues.RoleAgent, Status: queues.StatusOffline, StatusReason: "logout",
			StatusSince: at, ManualAway: true, OfflineSince: at, GraceDeadline: at},
		{ID: "bob", Name: "Bob", Role: queues.RoleAdmin, Status: queues.StatusOnline, StatusSince: at},
	}
	set := queues.DefaultSettings()
	set.AutoOwnership = map[string]bool{"email": true, odd: false}
	roster, err := json.Marshal(agents)
	if err != nil {
		t.Fatal(err)
	}
	hellos := []helloMsg{
		{Type: typeHello, V: protocolVersion, Seq: 42, Me: agents[1], Agents: roster, Settings: set, helloTail: helloTail{
			Notifications: queues.NotificationGroup{Total: 1,
				ByWho: []queues.NotificationCount{{By: queues.Actor{ID: "bob", Name: odd, Role: queues.RoleAdmin}, Count: 1}},
				Items: []queues.Notification{{Seq: 3, At: at, Agent: "alice", Conversation: "c1", Customer: odd}}},
			Channels: []string{"chat", odd}, Limits: limitsMsg{MaxFrame: 65536, PageMax: 200},
			Resumed: true, Missed: []json.RawMessage{json.RawMessage(`{"type":"event","seq":41}`)}}},
		{Type: typeHello, V: protocolVersion, Agents: json.RawMessage("[]"), helloTail: helloTail{Missed: []json.RawMessage{}}},
		{Type: typeHello},
	}
	for i, m := range hellos {
		want, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendHello(nil, &m)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("hello %d: %v\ngot  %s\nwant %s", i, err, got, want)
		}
	}

	conv := queues.Conversation{ID: "c1", Channel: "chat", Customer: odd, Subject: odd, Queue: queues.QueueNew, Owner: "alice",
		OwnerSince: at, Version: 7, CreatedAt: at, LastActivity: at, Preview: odd}
	for _, id := range []string{`"r1"`, `17`, `-1.5e3`, `"é\u00e9\\n"`, `"<b>"`, `"&"`, "\"\u2028\""} {
		for _, r := range []convResult{{Conv: conv, Seq: 9}, {}} {
			want, err := json.Marshal(&replyMsg{Type: typeReply, ID: json.RawMessage(id), OK: true, Result: r})
			if err != nil {
				t.Fatal(err)
			}
			if !plainID(json.RawMessage(id)) {
				if !bytes.Equal(want[:len(`{"type":"reply","id":`)+len(id)], append([]byte(`{"type":"reply","id":`), id...)) {
					continue // rewritten by encoding/json, as plainID said
				}
				t.Errorf("id %s: plainID refused an id encoding/json keeps", id)
				continue
			}
			if got := appendConvReply(nil, json.RawMessage(id), &r); !bytes.Equal(got, want) {
				t.Errorf("reply id %s:\ngot  %s\nwant %s", id, got, want)
			}
		}
	}
	pages := []subscribePage{
		{View: odd, Seq: 9, Items: []queues.Conversation{conv, {ID: "c2"}}, Next: odd,
			Counts: queues.Counts{Total: 12, Unowned: 3, Mine: 1, Others: 8, Matching: 2}, Resync: true},
		{View: "load", Seq: 1, Items: []queues.Conversation{}},
		{},
	}
	for i, p := range pages {
		want, err := json.Marshal(&replyMsg{Type: typeReply, ID: json.RawMessage(`"r1"`), OK: true, Result: p})
		if err != nil {
			t.Fatal(err)
		}
		if got := appendPageReply(nil, json.RawMessage(`"r1"`), &p); !bytes.Equal(got, want) {
			t.Errorf("page reply %d:\ngot  %s\nwant %s", i, got, want)
		}
	}
}

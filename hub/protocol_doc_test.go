package hub

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// docs/protocol.md is the contract the console and the load tool are
// written against. These tests keep it honest: every JSON example in it
// decodes into the hub's own message types with no unknown field, and the
// messages a running hub sends have the fields the examples show.

var jsonBlock = regexp.MustCompile("(?s)```json\n(.*?)```")

// docExamples returns every JSON value of the ```json blocks of
// docs/protocol.md.
func docExamples(t *testing.T) []json.RawMessage {
	t.Helper()
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	for _, m := range jsonBlock.FindAllSubmatch(doc, -1) {
		dec := json.NewDecoder(bytes.NewReader(m[1]))
		for {
			var v json.RawMessage
			err := dec.Decode(&v)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("a json block of protocol.md is not JSON: %v\n%s", err, m[1])
			}
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		t.Fatal("no JSON examples in protocol.md")
	}
	return out
}

// strict decodes b into v, refusing fields v does not have.
func strict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// docReply is a reply with its result kept raw, to decode by shape.
type docReply struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *replyError     `json:"error"`
}

// resultKind names a result by its shape.
func resultKind(result json.RawMessage) string {
	var keys map[string]json.RawMessage
	json.Unmarshal(result, &keys)
	switch {
	case keys["resumed"] != nil:
		return "subscribe resumed"
	case keys["view"] != nil:
		return "subscribe page"
	case keys["conv"] != nil && keys["seq"] != nil:
		return "conversation change"
	}
	return "other"
}

// resultTypes are the results a reply may carry.
var resultTypes = map[string]func() any{
	"subscribe resumed":   func() any { return new(subscribeResumed) },
	"subscribe page":      func() any { return new(subscribePage) },
	"conversation change": func() any { return new(convResult) },
	"other":               func() any { return new(queues.Page) },
}

// classify names a message: hello, a reply by its result's shape, an event
// by its kind, or a request by its op.
func classify(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var head struct {
		Type string `json:"type"`
		Kind string `json:"kind"`
		Op   string `json:"op"`
		OK   bool   `json:"ok"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	switch {
	case head.Op != "":
		return "request " + head.Op
	case head.Type == typeReply && !head.OK:
		return "reply error"
	case head.Type == typeReply:
		var r docReply
		json.Unmarshal(raw, &r)
		return "reply " + resultKind(r.Result)
	case head.Type == typeEvent:
		return "event " + head.Kind
	}
	return head.Type
}

// checkDecodes decodes one example into the hub's type for it.
func checkDecodes(t *testing.T, raw json.RawMessage) {
	t.Helper()
	kind := classify(t, raw)
	var err error
	switch {
	case strings.HasPrefix(kind, "request "):
		var req request
		if err = strict(raw, &req); err == nil {
			if _, ok := operations[req.Op]; !ok {
				err = fmt.Errorf("no operation %q", req.Op)
			}
		}
	case kind == typeHello:
		var h helloMsg
		if err = strict(raw, &h); err == nil {
			for _, ev := range h.Missed {
				checkDecodes(t, ev)
			}
		}
	case strings.HasPrefix(kind, "reply"):
		var r docReply
		if err = strict(raw, &r); err == nil && r.OK {
			res := resultTypes[resultKind(r.Result)]()
			if err = strict(r.Result, res); err == nil {
				if sr, ok := res.(*subscribeResumed); ok {
					for _, ev := range sr.Events {
						checkDecodes(t, ev)
					}
				}
			}
		}
	case strings.HasPrefix(kind, "event "):
		var ev eventMsg
		err = strict(raw, &ev)
	default:
		err = fmt.Errorf("not a request, hello, reply or event")
	}
	if err != nil {
		t.Errorf("protocol.md example (%s) does not decode: %v\n%s", kind, err, raw)
	}
}

func TestProtocolDocExamplesDecode(t *testing.T) {
	seen := map[string]bool{}
	for _, raw := range docExamples(t) {
		seen[classify(t, raw)] = true
		checkDecodes(t, raw)
	}
	for _, want := range []string{
		"hello", "reply error", "reply conversation change", "reply subscribe page", "reply subscribe resumed",
		"event conversation", "event presence", "event settings", "event notification", "event agent",
		"request subscribe",
	} {
		if !seen[want] {
			t.Errorf("protocol.md has no example of %s", want)
		}
	}
}

// optionalKeys are fields that are left out when empty (omitempty), so a
// real message may lack them.
var optionalKeys = []string{
	"owner", "owner_since", "boomerang", "preview", "subject", "customer",
	"manual_away", "status_reason", "offline_since", "grace_deadline", "last_seen",
	"remove_ownership_since", "next", "field", "reason", "resync",
}

// sameFields compares the field names of a documented and a real message:
// at the top level both ways (the doc shows every field), below it the
// doc's fields must exist (the doc may show an object in part).
func sameFields(t *testing.T, what string, doc, real json.RawMessage, top bool) {
	t.Helper()
	var d, r map[string]json.RawMessage
	if json.Unmarshal(doc, &d) != nil || json.Unmarshal(real, &r) != nil {
		return // not objects: nothing to compare
	}
	for k, dv := range d {
		rv, ok := r[k]
		if !ok {
			if !slices.Contains(optionalKeys, k) {
				t.Errorf("%s: protocol.md shows %q, the hub does not send it\n doc: %s\nreal: %s", what, k, doc, real)
			}
			continue
		}
		dv, rv = firstElem(dv), firstElem(rv)
		sameFields(t, what+"."+k, dv, rv, false)
	}
	if top {
		for k := range r {
			if _, ok := d[k]; !ok {
				t.Errorf("%s: the hub sends %q, protocol.md does not show it\n doc: %s\nreal: %s", what, k, doc, real)
			}
		}
	}
}

// firstElem is an array's first element, or v itself.
func firstElem(v json.RawMessage) json.RawMessage {
	var a []json.RawMessage
	if json.Unmarshal(v, &a) == nil && len(a) > 0 {
		return a[0]
	}
	return v
}

func TestProtocolDocMatchesTheHub(t *testing.T) {
	e := newEnv(t)
	on := true
	e.workspace("acme", queues.SettingsPatch{AutoOwnership: map[string]bool{"email": true}})
	c := e.inbound("acme", "c7", "email")
	bea := e.connect("acme", "bea")
	since := bea.hello().Seq
	admin := e.connect("acme", "admin1")
	al := e.connect("acme", "al")
	bea.ok("subscribe", map[string]any{"view": "mine", "queue": "new", "filter": map[string]any{"kind": "mine"}}, nil)
	al.ok("subscribe", map[string]any{"view": "new", "queue": "new"}, nil)
	al.ok("assign", map[string]any{"conv": "c7", "agent": "bea", "version": c.Version}, nil)
	al.req("assign", map[string]any{"conv": "c7", "agent": "bea", "version": c.Version}) // conflict
	al.req("page", map[string]any{"queue": "new", "limit": 501})                         // invalid, with field
	al.ok("subscribe", map[string]any{"view": "again", "queue": "new", "since": since}, nil)
	bea.waitEvent("notification", func(ev eventMsg) bool { return ev.Kind == queues.EventNotification })
	admin.ok("update_settings", map[string]any{"settings": map[string]any{"remove_ownership": on}}, nil)
	e.connect("acme", "cy") // a first connection: one presence event
	al.waitEvent("cy online", isPresence("cy", queues.StatusOnline))
	// A token with another display name renames the agent: an agent event.
	renamed, err := Mint(testSecret, Identity{Workspace: "acme", Agent: "cy", Name: "Cy Young", Role: queues.RoleAgent}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	e.dial(renamed).hello()
	al.waitEvent("cy renamed", func(ev eventMsg) bool {
		return ev.Kind == queues.EventAgent && ev.Agent != nil && ev.Agent.Name == "Cy Young"
	})
	bea.ok("logout", nil, nil)
	al.waitEvent("bea offline", isPresence("bea", queues.StatusOffline))

	real := map[string]json.RawMessage{}
	for _, cl := range []*client{al, bea} {
		for _, m := range cl.all() {
			k := classify(t, m.raw)
			if k == "event presence" && m.event(t).Presence.To != queues.StatusOffline {
				continue // the doc's example is a transition to offline
			}
			if _, ok := real[k]; !ok {
				real[k] = m.raw
			}
		}
	}
	for _, doc := range docExamples(t) {
		k := classify(t, doc)
		if strings.HasPrefix(k, "request ") {
			continue
		}
		r, ok := real[k]
		if !ok {
			t.Errorf("the hub sent no %s to compare protocol.md's with", k)
			continue
		}
		sameFields(t, k, doc, r, true)
	}
}

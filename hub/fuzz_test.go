package hub

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presencehub/presencehub/queues"
)

// Fuzz tests of everything the hub decodes from a client: WebSocket request
// frames, HTTP API requests, tokens and filters. `go test` runs their
// seeds; `go test -fuzz` explores (docs/security.md lists the properties).

// leakMarker is the customer of the only conversation of workspace
// "globex": no answer to a client of "acme" may ever contain it.
const leakMarker = "GLOBEX-SECRET-CUSTOMER"

// requestSeeds are request frames: every operation of docs/protocol.md with
// valid fields, and the shapes a broken or hostile client sends.
var requestSeeds = []string{
	`{"id":1,"op":"subscribe","view":"mine","queue":"new","filter":{"kind":"mine"},"limit":50}`,
	`{"id":2,"op":"subscribe","view":"v","queue":"pending","filter":{"kind":"agents","agents":["al","bea"]},"since":3}`,
	`{"id":"u","op":"unsubscribe","view":"mine"}`,
	`{"id":4,"op":"page","queue":"resolved","filter":{"kind":"others"},"limit":100,"cursor":"AAAYnMoQm4AAAmM3"}`,
	`{"id":5,"op":"conversation","conv":"c1"}`,
	`{"id":6,"op":"history","conv":"c1"}`,
	`{"id":7,"op":"assign","conv":"c1","agent":"bea","version":1}`,
	`{"id":8,"op":"unassign","conv":"c2","version":3}`,
	`{"id":9,"op":"reply","conv":"c1","text":"On its way","message_id":"r-1"}`,
	`{"id":10,"op":"move","conv":"c1","queue":"pending","version":0}`,
	`{"id":11,"op":"boomerang","conv":"c2","preset":"4h"}`,
	`{"id":12,"op":"boomerang","conv":"c2","in":86400}`,
	`{"id":12,"op":"boomerang","conv":"c2","in":31536000}`,
	`{"id":13,"op":"boomerang","conv":"c2","at":"2030-01-02T03:04:05+01:00"}`,
	`{"id":14,"op":"cancel_boomerang","conv":"c2"}`,
	`{"id":15,"op":"status","status":"away"}`,
	`{"id":16,"op":"notifications_read","up_to":0}`,
	`{"id":17,"op":"activity"}`,
	`{"id":18,"op":"logout"}`,
	`{"id":19,"op":"settings"}`,
	`{"id":20,"op":"update_settings","settings":{"remove_ownership":true,"offline_grace":30,"auto_ownership":{"chat":true}}}`,
	`{"id":21,"op":"release_offline"}`,
	`{"id":22,"op":"force_offline","agent":"bea"}`,
	`{"id":23,"op":"admin_log","limit":2}`,
	// Another workspace's ids, and a workspace named in the request.
	`{"id":24,"op":"conversation","conv":"g1"}`,
	`{"id":25,"op":"assign","conv":"g1","agent":"gus","version":1,"ws":"globex"}`,
	`{"id":26,"op":"page","queue":"new","workspace":"globex"}`,
	// Broken shapes.
	``, `not json`, `[1,2]`, `"op"`, `42`, `null`, `{}`, `{"id":1}`, `{"op":"settings"}`,
	`{"id":null,"op":"settings"}`, `{"id":[1],"op":"settings"}`, `{"id":true,"op":"settings"}`,
	`{"id":"` + strings.Repeat("x", 200) + `","op":"settings"}`,
	`{"id":1,"op":"teleport"}`, `{"id":1,"op":7}`, `{"id":1,"op":"assign","version":"six"}`,
	`{"id":1,"op":"assign","conv":"c1","agent":"bea","version":1e400}`,
	`{"id":1,"op":"assign","conv":"c1","agent":"bea","version":18446744073709551616}`,
	`{"id":1,"op":"assign","conv":"c1","agent":"bea","version":-1}`,
	`{"id":1e400,"op":"settings"}`, `{"id":-0.0e-7,"op":"settings"}`,
	`{"id":1,"op":"page","queue":"new","limit":-5}`, `{"id":1,"op":"page","queue":"new","limit":501}`,
	`{"id":1,"op":"subscribe","view":"","queue":"new"}`, `{"id":1,"op":"subscribe","view":"v","queue":"new","filter":"mine"}`,
	`{"id":1,"op":"subscribe","view":"v","queue":"new","filter":{"kind":"agents","agents":[]}}`,
	`{"id":1,"op":"boomerang","conv":"c2","in":-1}`, `{"id":1,"op":"boomerang","conv":"c2","at":"tomorrow"}`,
	`{"id":1,"op":"update_settings","settings":{"offline_grace":91}}`,
	`{"id":1,"op":"update_settings","settings":{"auto_ownership":{"E/mail":true}}}`,
	`{"id":1,"op":"reply","conv":"c1","message_id":"` + strings.Repeat("m", 300) + `"}`,
	"{\"id\":1,\"op\":\"activity\",\"text\":\"\xff\xfe\"}", "\xef\xbb\xbf{\"id\":1,\"op\":\"activity\"}",
	`{"id":1,"op":"activity","OP":"logout"}`, `{"id":1,"op":"activity","op":"settings"}`,
	strings.Repeat("[", 1000) + strings.Repeat("]", 1000),
	`{"id":1,"op":"activity","x":` + strings.Repeat("[", 1000) + strings.Repeat("]", 1000) + `}`,
}

// docRequests are the requests of docs/protocol.md's examples.
func docRequests(f *testing.F) []string {
	doc, err := os.ReadFile("../docs/protocol.md")
	if err != nil {
		f.Fatal(err)
	}
	var out []string
	for _, m := range jsonBlock.FindAllSubmatch(doc, -1) {
		dec := json.NewDecoder(bytes.NewReader(m[1]))
		for {
			var v map[string]json.RawMessage
			if err := dec.Decode(&v); err != nil {
				break
			}
			if _, ok := v["op"]; ok {
				b, _ := json.Marshal(v)
				out = append(out, string(b))
			}
		}
	}
	return out
}

// FuzzDecodeRequest: decodeRequest never panics; a frame it refuses gets
// bad_request and a reply id that is null or the frame's own string or
// number id; a request it accepts has an id and an op, and encoding it and
// decoding it again gives the same request.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range append(requestSeeds, docRequests(f)...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		req, id, rerr := decodeRequest(frame)
		if rerr != nil {
			if req != nil {
				t.Fatalf("%q: got a request and an error", frame)
			}
			if rerr.Code != codeBadRequest {
				t.Fatalf("%q: got code %s, want bad_request", frame, rerr.Code)
			}
			if len(id) != 0 && string(id) != "null" {
				wantEchoable(t, frame, id)
			}
			return
		}
		if req == nil || req.Op == "" || !bytes.Equal(req.ID, id) {
			t.Fatalf("%q: got request %+v with reply id %s, want an op and the same id", frame, req, id)
		}
		wantEchoable(t, frame, id)

		again, err := json.Marshal(req)
		if err != nil {
			t.Fatalf("%q: encode %+v: %v", frame, req, err)
		}
		req2, id2, rerr := decodeRequest(again)
		if rerr != nil || !bytes.Equal(id2, id) {
			t.Fatalf("%q: re-encoded as %s: got id %s, error %v", frame, again, id2, rerr)
		}
		if !sameRequest(req, req2) {
			t.Fatalf("%q: round trip through %s: got %+v, want %+v", frame, again, req2, req)
		}
	})
}

// wantEchoable fails unless id is what a reply may echo: a JSON string or
// number of at most maxIDBytes. (A number need not fit a float64: 1e400 is
// echoed as sent.)
func wantEchoable(t *testing.T, frame []byte, id json.RawMessage) {
	t.Helper()
	if len(id) == 0 || len(id) > maxIDBytes || !json.Valid(id) {
		t.Fatalf("%q: reply id %q is not valid JSON of at most %d bytes", frame, id, maxIDBytes)
	}
	if c := id[0]; c != '"' && c != '-' && (c < '0' || c > '9') {
		t.Fatalf("%q: reply id %s is not a string or a number", frame, id)
	}
}

// sameRequest compares two decoded requests: times by instant, empty and
// missing lists and maps alike (encoding leaves empty ones out).
func sameRequest(a, b *request) bool {
	x, y := *a, *b
	if (x.At == nil) != (y.At == nil) || x.At != nil && !x.At.Equal(*y.At) {
		return false
	}
	x.At, y.At = nil, nil
	for _, r := range []*request{&x, &y} {
		if r.Filter != nil && len(r.Filter.Agents) == 0 {
			f := *r.Filter
			f.Agents = nil
			r.Filter = &f
		}
		if r.Settings != nil && len(r.Settings.AutoOwnership) == 0 {
			s := *r.Settings
			s.AutoOwnership = nil
			r.Settings = &s
		}
	}
	return reflect.DeepEqual(x, y)
}

// fuzzStore is an in-memory store with two workspaces: acme, where the
// fuzzed client lives (agents al, bea and the admin ada; c1 unowned in new,
// c2 owned by bea in pending), and globex, whose only conversation must
// never show.
func fuzzStore(f *testing.F) *queues.Store {
	st, err := queues.Open(queues.Options{InMemory: true})
	if err != nil {
		f.Fatalf("open store: %v", err)
	}
	f.Cleanup(func() { st.Close() })
	ctx := context.Background()
	for _, a := range []queues.Agent{
		{ID: "al", Name: "Al", Role: queues.RoleAgent},
		{ID: "bea", Name: "Bea", Role: queues.RoleAgent},
		{ID: "ada", Name: "Ada", Role: queues.RoleAdmin},
	} {
		if _, err := st.EnsureAgent(ctx, "acme", a); err != nil {
			f.Fatalf("agent %s: %v", a.ID, err)
		}
	}
	if _, err := st.EnsureAgent(ctx, "globex", queues.Agent{ID: "gus", Name: "Gus", Role: queues.RoleAgent}); err != nil {
		f.Fatalf("agent gus: %v", err)
	}
	for _, in := range []struct{ ws, conv string }{{"acme", "c1"}, {"acme", "c2"}, {"globex", "g1"}} {
		customer := "Dana"
		if in.ws == "globex" {
			customer = leakMarker
		}
		if _, err := st.Inbound(ctx, in.ws, queues.Inbound{Conversation: in.conv, MessageID: "m-" + in.conv,
			Channel: "email", Customer: customer, Text: "hello from " + customer}); err != nil {
			f.Fatalf("inbound %s: %v", in.conv, err)
		}
	}
	ada := queues.Actor{ID: "ada", Name: "Ada", Role: queues.RoleAdmin}
	if _, err := st.Assign(ctx, "acme", ada, "c2", "bea", 1); err != nil {
		f.Fatalf("assign c2: %v", err)
	}
	if _, err := st.Move(ctx, "acme", ada, "c2", queues.QueuePending, 0); err != nil {
		f.Fatalf("move c2: %v", err)
	}
	if _, err := st.Assign(ctx, "globex", queues.Actor{ID: "gus", Role: queues.RoleAgent}, "g1", "gus", 1); err != nil {
		f.Fatalf("assign g1: %v", err)
	}
	return st
}

// nopPresence is a Presence that hears nothing: the request fuzzer is about
// the protocol, not presence.
type nopPresence struct{}

func (nopPresence) Connect(ws, agent string)            {}
func (nopPresence) Disconnect(ws, agent string)         {}
func (nopPresence) Activity(ws, agent string)           {}
func (nopPresence) SetAway(ws, agent string, away bool) {}
func (nopPresence) Logout(ws, agent string)             {}
func (nopPresence) ForceOffline(ws, agent string)       {}

// wsReplyCodes are the codes a request of a well-behaved connection may be
// answered with: rate_limited, unavailable and internal are not the
// request's doing (the bucket is refilled for every request here, and the
// store is healthy).
var wsReplyCodes = []string{codeBadRequest, codeInvalid, codeUnknownOp, codeNotFound, codeConflict, codeForbidden}

// requiredFields are the fields an operation needs, which an invalid reply
// may name although the request does not carry them.
var requiredFields = map[string][]string{
	"subscribe": {"view", "queue"}, "unsubscribe": {"view"}, "page": {"queue"},
	"conversation": {"conv"}, "history": {"conv"}, "assign": {"conv", "agent", "version"},
	"unassign": {"conv", "version"}, "reply": {"conv"}, "move": {"conv", "queue"},
	"boomerang": {"conv", "preset"}, "cancel_boomerang": {"conv"}, "status": {"status"},
	"update_settings": {"settings"}, "force_offline": {"agent"},
}

// FuzzHandleRequest answers fuzzed frames with the connection's own request
// handling (conn.handle) on a real store, as agent al or admin ada of acme,
// and checks the reply: exactly one, with the id decodeRequest gives; an
// error code of the protocol's table that the request could cause; an
// invalid reply names a field the request carries or its operation needs;
// nothing of another workspace. The connection has no socket: it is marked
// as having a writer, so replies stay in its queue where the test reads
// them.
func FuzzHandleRequest(f *testing.F) {
	for _, s := range append(requestSeeds, docRequests(f)...) {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	st := fuzzStore(f)
	v, err := NewVerifier(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	h := New(Config{Backend: st, Presence: nopPresence{}, Verifier: v})
	f.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Shutdown(ctx)
	})

	f.Fuzz(func(t *testing.T, frame []byte, admin bool) {
		id := Identity{Workspace: "acme", Agent: "al", Name: "Al", Role: queues.RoleAgent}
		if admin {
			id = Identity{Workspace: "acme", Agent: "ada", Name: "Ada", Role: queues.RoleAdmin}
		}
		c := newConn(h, id)
		c.mu.Lock()
		c.writing = true // no writer may start: there is no socket
		c.mu.Unlock()
		now := time.Now()
		c.rd.tokens, c.rd.tokensAt, c.rd.lastActivity = reqBurst, now, now

		c.handle(bytes.Clone(frame))

		c.mu.Lock()
		out := c.q.take()
		c.mu.Unlock()
		if len(out) != 1 {
			t.Fatalf("%q: got %d messages, want one reply", frame, len(out))
		}
		raw := out[0].b
		if bytes.Contains(raw, []byte(leakMarker)) {
			t.Fatalf("%q: the reply shows another workspace's conversation: %s", frame, raw)
		}
		var r struct {
			Type   string          `json:"type"`
			ID     json.RawMessage `json:"id"`
			OK     bool            `json:"ok"`
			Result json.RawMessage `json:"result"`
			Error  *replyError     `json:"error"`
		}
		if err := json.Unmarshal(raw, &r); err != nil || r.Type != typeReply {
			t.Fatalf("%q: got %s, want a reply (%v)", frame, raw, err)
		}
		_, wantID, _ := decodeRequest(frame)
		if len(wantID) == 0 {
			wantID = nullID
		}
		if !bytes.Equal(r.ID, wantID) {
			t.Fatalf("%q: reply id %s, want %s", frame, r.ID, wantID)
		}
		if r.OK {
			if r.Error != nil || len(r.Result) == 0 || r.Result[0] != '{' {
				t.Fatalf("%q: ok reply %s, want a result object and no error", frame, raw)
			}
			return
		}
		if r.Error == nil || !slices.Contains(wsReplyCodes, r.Error.Code) || r.Error.Message == "" {
			t.Fatalf("%q: got %s, want an error with a message and one of %v", frame, raw, wsReplyCodes)
		}
		if r.Error.Code == codeInvalid {
			allowed := frameFields(frame)
			var op struct {
				Op string `json:"op"`
			}
			json.Unmarshal(frame, &op)
			allowed = append(allowed, requiredFields[op.Op]...)
			if !slices.Contains(allowed, r.Error.Field) {
				t.Fatalf("%q: invalid names field %q, want one of the request's %v", frame, r.Error.Field, allowed)
			}
		}
	})
}

// frameFields lists the keys of a JSON object and of the objects inside
// it, lower-cased as encoding/json matches them.
func frameFields(b []byte) []string {
	var out []string
	var walk func(raw json.RawMessage, depth int)
	walk = func(raw json.RawMessage, depth int) {
		var m map[string]json.RawMessage
		if depth > 2 || json.Unmarshal(raw, &m) != nil {
			return
		}
		for k, v := range m {
			out = append(out, strings.ToLower(k))
			walk(v, depth+1)
		}
	}
	walk(bytes.TrimSpace(b), 0)
	return out
}

// The HTTP routes FuzzAPI drives, with the token role each needs.
var fuzzRoutes = []struct {
	method, path string // path has %s for the conversation id
	role         queues.Role
	result       string   // the key of a 200 answer
	required     []string // fields an invalid answer may name though absent
}{
	{"POST", "/api/v1/conversations/%s/inbound", queues.RoleService, "conversation", []string{"message_id", "channel", "customer"}},
	{"POST", "/api/v1/conversations/%s/assign", queues.RoleAgent, "conversation", []string{"agent", "version"}},
	{"PATCH", "/api/v1/settings", queues.RoleAdmin, "settings", nil},
	{"PUT", "/api/v1/conversations/%s/boomerang", queues.RoleAgent, "conversation", []string{"preset"}},
	{"GET", "/api/v1/conversations", queues.RoleAgent, "items", []string{"agents"}},
}

// apiCodes are the error codes each status of docs/http-api.md may carry.
var apiCodes = map[int][]string{
	400: {"bad_request", "invalid"},
	403: {"forbidden"},
	404: {"not_found"},
	409: {"conflict"},
	413: {"too_large"},
	415: {"unsupported_media_type"},
}

// FuzzAPI sends fuzzed requests to the real API handler on a real store:
// the answer is never a 5xx and never a panic; its status is one of the
// documented ones with its documented code, in the one JSON error shape; an
// invalid answer names a field, parameter or path part the request has (or
// needs); a request naming a workspace other than its token's never
// succeeds; nothing of another workspace shows.
func FuzzAPI(f *testing.F) {
	bodies := []string{
		`{"message_id":"m-9","channel":"email","customer":"Dana","subject":"Refund","text":"Where is it?"}`,
		`{"agent":"bea","version":1}`,
		`{"remove_ownership":true,"offline_grace":45,"idle_away":600,"idle_logout":0,"default_boomerang":3600,"auto_ownership":{"email":true}}`,
		`{"preset":"4h"}`,
		``,
	}
	for i, b := range bodies {
		f.Add(uint8(i), "c1", "", []byte(b), uint8(0))
		f.Add(uint8(i), "c2", "", []byte(b), uint8(0))
	}
	for _, s := range []struct {
		route uint8
		id    string
		query string
		body  string
		ctype uint8
	}{
		{0, "new-1", "", `{"message_id":"x","channel":"Chat!","customer":"D"}`, 0},
		{0, "c1", "", `{"message_id":"` + strings.Repeat("m", 257) + `"}`, 0},
		{0, "c1", "", `{"message_id":"m1","ws":"globex"}`, 0},
		{0, "c1", "ws=globex", `{"message_id":"m1"}`, 0},
		{0, "a/b", "", `{"message_id":"m1"}`, 0},
		{1, "g1", "", `{"agent":"gus","version":1}`, 0},
		{1, "c1", "", `{"agent":"bea"}`, 0},
		{1, "c1", "", `{"agent":"bea","version":-1}`, 0},
		{1, "c1", "", `{"agent":"bea","version":1e400}`, 0},
		{1, "c1", "", `{"agent":"bea","version":18446744073709551616}`, 0},
		{1, "c1", "", `{"agent":"bea","version":1,"workspace":"globex"}`, 0},
		{1, "c1", "", `{"agent":"bea","version":1} {}`, 0},
		{1, "c1", "", `[{"agent":"bea","version":1}]`, 0},
		{1, "c1", "", strings.Repeat("[", 10000) + strings.Repeat("]", 10000), 0},
		{1, "c1", "", `{"agent":"bea","version":1}`, 3},
		{1, "c1", "", `{"agent":"bea","version":1,"agnet":"x"}`, 1},
		{1, "c1", "", `{"agent":"bea","version":1,"pad":"` + strings.Repeat("x", 70000) + `"}`, 0},
		{2, "", "", `{"offline_grace":91}`, 0},
		{2, "", "", `{"idle_away":-1}`, 0},
		{2, "", "", `{"default_boomerang":2592001}`, 0},
		{2, "", "", `{"auto_ownership":{"E mail":true}}`, 0},
		{2, "", "", `{"offline_grace":"60"}`, 0},
		{2, "", "", `{"offline_grace":1e3}`, 0},
		{3, "c2", "", `{"in":31536000}`, 0},
		{3, "c2", "", `{"at":"9999-12-31T23:59:59Z"}`, 0},
		{3, "c2", "", `{"at":"2020-01-01T00:00:00Z"}`, 0},
		{3, "c2", "", `{"preset":"4h","in":60}`, 0},
		{3, "c1", "", `{"preset":"4h"}`, 0},
		{4, "", "queue=pending&filter=agents&agents=al,bea&limit=50", ``, 2},
		{4, "", "filter=agents&agents=al,,bea", ``, 2},
		{4, "", "filter=all&agents=al", ``, 2},
		{4, "", "filter=mine&limit=0", ``, 2},
		{4, "", "limit=501", ``, 2},
		{4, "", "queue=new&queue=pending", ``, 2},
		{4, "", "cursor=%00%ff", ``, 2},
		{4, "", "cursor=AAAAAAAAAAAA", ``, 2},
		{4, "", "ws=globex", ``, 2},
		{4, "", "workspace=acme&filter=unowned", ``, 2},
		{4, "", "%zz=1&filter=;", ``, 2},
	} {
		f.Add(s.route, s.id, s.query, []byte(s.body), s.ctype)
	}

	st := fuzzStore(f)
	v, err := NewVerifier(apiSecret)
	if err != nil {
		f.Fatal(err)
	}
	api := NewAPI(APIConfig{Backend: st, Verifier: v, Logger: slog.New(slog.DiscardHandler), RateLimit: -1})
	tokens := map[queues.Role]string{}
	for role, sub := range map[queues.Role]string{queues.RoleService: "helpdesk", queues.RoleAgent: "al", queues.RoleAdmin: "ada"} {
		tok, err := Mint(apiSecret, Identity{Workspace: "acme", Agent: sub, Role: role}, time.Hour)
		if err != nil {
			f.Fatal(err)
		}
		tokens[role] = tok
	}
	ctypes := []string{"application/json", "application/json; charset=utf-8", "", "text/plain"}

	f.Fuzz(func(t *testing.T, route uint8, convID, query string, body []byte, ctype uint8) {
		rt := fuzzRoutes[int(route)%len(fuzzRoutes)]
		p := rt.path
		if strings.Contains(p, "%s") {
			if convID == "" {
				convID = "c1"
			}
			p = strings.Replace(p, "%s", url.PathEscape(convID), 1)
		}
		var rd io.Reader
		if rt.method != "GET" {
			rd = bytes.NewReader(body)
		}
		req := httptest.NewRequest(rt.method, "/", rd)
		u, err := url.Parse(p) // escaped above, so it parses
		if err != nil {
			t.Fatalf("path %q: %v", p, err)
		}
		u.RawQuery = query // as sent: the server's parsing copes with anything
		req.URL = u
		req.Header.Set("Authorization", "Bearer "+tokens[rt.role])
		if ct := ctypes[int(ctype)%len(ctypes)]; ct != "" && rd != nil {
			req.Header.Set("Content-Type", ct)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)

		res := w.Result()
		got := w.Body.Bytes()
		what := rt.method + " " + p + "?" + query + " " + string(body)
		if res.StatusCode >= 500 {
			t.Fatalf("%s: got %d %s, want no 5xx", what, res.StatusCode, got)
		}
		// The router's own 404 and 405 (no route) do not depend on the
		// token and come without Cache-Control; every other answer has it.
		routed := res.StatusCode != 404 && res.StatusCode != 405 || res.Header.Get("Cache-Control") != ""
		if res.Header.Get("Content-Type") != "application/json" || routed && res.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("%s: got %d with Content-Type %q, Cache-Control %q", what, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Cache-Control"))
		}
		if bytes.Contains(got, []byte(leakMarker)) {
			t.Fatalf("%s: the answer shows another workspace's conversation: %s", what, got)
		}
		if res.StatusCode == 200 {
			var ok map[string]json.RawMessage
			if err := json.Unmarshal(got, &ok); err != nil || ok[rt.result] == nil {
				t.Fatalf("%s: got 200 %s, want an object with %q", what, got, rt.result)
			}
			for _, k := range []string{"ws", "workspace"} {
				if s := scopeNamed(body, query, k); s != "" && s != "acme" {
					t.Fatalf("%s: got 200 for a request naming %s %q, want it refused", what, k, s)
				}
			}
			return
		}
		codes, documented := apiCodes[res.StatusCode]
		if !documented {
			t.Fatalf("%s: got status %d %s, want one of the documented", what, res.StatusCode, got)
		}
		var e struct {
			Error apiErrBody `json:"error"`
		}
		if err := strict(got, &e); err != nil || e.Error.Message == "" || !slices.Contains(codes, e.Error.Code) {
			t.Fatalf("%s: got %d %s, want an error object with a message and a code of %v (%v)", what, res.StatusCode, got, codes, err)
		}
		if e.Error.CurrentVersion != nil && res.StatusCode != 409 {
			t.Fatalf("%s: current_version on a %d", what, res.StatusCode)
		}
		if e.Error.Code == "invalid" && e.Error.Field != "" {
			allowed := append(frameFields(body), "id")
			for k := range req.URL.Query() {
				allowed = append(allowed, k)
			}
			allowed = append(allowed, rt.required...)
			if !slices.Contains(allowed, e.Error.Field) {
				t.Fatalf("%s: invalid names field %q, want one the request has or needs: %v", what, e.Error.Field, allowed)
			}
		}
	})
}

// scopeNamed is the workspace a request names in its body or query under
// key, if any.
func scopeNamed(body []byte, query, key string) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(body, &m) == nil {
		for k, v := range m {
			var s string
			if strings.EqualFold(k, key) && json.Unmarshal(v, &s) == nil && s != "" {
				return s
			}
		}
	}
	if q, err := url.ParseQuery(query); err == nil {
		return q.Get(key)
	}
	return ""
}

// tokenSeeds are tokens of every kind the hub must refuse, and a good one.
func tokenSeeds(f *testing.F) []string {
	good, err := Mint(testSecret, Identity{Workspace: "acme", Agent: "al", Name: "Al", Role: queues.RoleAgent}, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	sign := func(m jwt.SigningMethod, key any, c jwt.Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			f.Fatal(err)
		}
		return s
	}
	parts := strings.Split(good, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	tampered := func(from, to string) string {
		p := strings.Replace(string(payload), from, to, 1)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(p)) + "." + parts[2]
	}
	rsHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","typ":"JWT"}`))
	return []string{
		good,
		good + " ", " " + good, good + ".", good + "=",
		sign(jwt.SigningMethodHS256, testSecret, claims(-time.Minute)),
		sign(jwt.SigningMethodHS256, []byte("not-the-secret-0123456789abcdef"), claims(time.Hour)),
		sign(jwt.SigningMethodHS384, testSecret, claims(time.Hour)),
		sign(jwt.SigningMethodHS512, testSecret, claims(time.Hour)),
		sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(time.Hour)),
		rsHeader + "." + parts[1] + "." + parts[2],
		tampered(`"ws":"acme"`, `"ws":"globex"`),
		tampered(`"role":"agent"`, `"role":"admin"`),
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1],
		"", ".", "..", "a.b.c", "not a token", "Bearer " + good,
	}
}

// FuzzVerify: Verify never panics and accepts a token only if it is signed
// with the secret by HS256 and carries valid claims, checked here without
// the JWT library: the HMAC of the first two parts, alg HS256 in the header,
// exp not past (5 s leeway), nbf not ahead, a role, a ws and a sub of the
// allowed characters, a name of at most 128 bytes.
func FuzzVerify(f *testing.F) {
	for _, s := range tokenSeeds(f) {
		f.Add(s)
	}
	v, err := NewVerifier(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		id, err := v.Verify(tok)
		if err != nil {
			if id != (Identity{}) {
				t.Fatalf("%q: refused (%v) with an identity %+v", tok, err, id)
			}
			if !errors.Is(err, ErrNoToken) && !errors.Is(err, ErrBadToken) && !errors.Is(err, ErrExpired) {
				t.Fatalf("%q: got %v, want ErrNoToken, ErrBadToken or ErrExpired", tok, err)
			}
			return
		}
		if why := independentlyInvalid(tok, time.Now()); why != "" {
			t.Fatalf("%q: accepted as %+v, want refused: %s", tok, id, why)
		}
	})
}

// FuzzVerifyClaims signs fuzzed headers and claims with the secret, so the
// claims, not the signature, are what is explored: Verify accepts exactly
// the tokens the independent check accepts.
func FuzzVerifyClaims(f *testing.F) {
	exp := time.Now().Add(time.Hour).Unix()
	hs := `{"alg":"HS256","typ":"JWT"}`
	good := `{"sub":"al","name":"Al","ws":"acme","role":"agent","exp":` + itoa64(exp) + `}`
	for _, s := range [][2]string{
		{hs, good},
		{`{"alg":"HS256"}`, good},
		{`{"alg":"none"}`, good},
		{`{"alg":"HS384"}`, good},
		{`{"alg":"hs256"}`, good},
		{`{"typ":"JWT"}`, good},
		{`{"alg":["HS256"]}`, good},
		{hs, `{"sub":"al","ws":"acme","role":"agent"}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","exp":1}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","exp":"` + itoa64(exp) + `"}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","exp":1e400}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","exp":` + itoa64(exp) + `,"nbf":` + itoa64(exp) + `}`},
		{hs, `{"sub":"al","ws":"acme","role":"root","exp":` + itoa64(exp) + `}`},
		{hs, `{"sub":"al","ws":"ac/me","role":"agent","exp":` + itoa64(exp) + `}`},
		{hs, `{"sub":"","ws":"acme","role":"agent","exp":` + itoa64(exp) + `}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","name":"` + strings.Repeat("n", 129) + `","exp":` + itoa64(exp) + `}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","exp":` + itoa64(exp) + `,"ws":"globex"}`},
		{hs, `{"sub":"al","ws":"acme","role":"agent","exp":` + itoa64(exp) + `,"aud":5}`},
		{hs, `[1]`},
		{hs, `null`},
	} {
		f.Add(s[0], s[1])
	}
	v, err := NewVerifier(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, header, payload string) {
		enc := base64.RawURLEncoding
		signing := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
		mac := hmac.New(sha256.New, testSecret)
		mac.Write([]byte(signing))
		tok := signing + "." + enc.EncodeToString(mac.Sum(nil))
		now := time.Now()
		_, err := v.Verify(tok)
		why := independentlyInvalid(tok, now)
		// A claim within a second of expiring may be judged on either
		// side of the line: the two checks do not read the clock at once.
		if err == nil && why != "" {
			t.Fatalf("header %s claims %s: accepted, want refused: %s", header, payload, why)
		}
		if err != nil && why == "" && !nearExpiry(payload, now) {
			t.Fatalf("header %s claims %s: refused (%v), want accepted", header, payload, err)
		}
	})
}

// independentlyInvalid says why tok is not an HS256 token signed with
// testSecret with valid claims, or "" when it is. It does not use the JWT
// library; claims are decoded by encoding/json into the hub's Claims, as
// the hub reads them.
func independentlyInvalid(tok string, now time.Time) string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return "not three parts"
	}
	enc := base64.RawURLEncoding
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return "signature is not base64url"
	}
	mac := hmac.New(sha256.New, testSecret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return "not signed with the secret by HMAC-SHA256"
	}
	hb, err := enc.DecodeString(parts[0])
	if err != nil {
		return "header is not base64url"
	}
	var hdr map[string]any
	if json.Unmarshal(hb, &hdr) != nil {
		return "header is not a JSON object"
	}
	if hdr["alg"] != "HS256" {
		return "alg is not HS256"
	}
	pb, err := enc.DecodeString(parts[1])
	if err != nil {
		return "claims are not base64url"
	}
	var c Claims
	if err := json.Unmarshal(pb, &c); err != nil {
		return "claims do not decode: " + err.Error()
	}
	if c.ExpiresAt == nil {
		return "no exp"
	}
	if now.After(c.ExpiresAt.Add(5 * time.Second)) {
		return "expired"
	}
	if c.NotBefore != nil && now.Add(5*time.Second).Before(c.NotBefore.Time) {
		return "not valid yet"
	}
	switch queues.Role(c.Role) {
	case queues.RoleAgent, queues.RoleAdmin, queues.RoleService:
	default:
		return "no valid role"
	}
	if ValidID("ws", c.Workspace) != nil || ValidID("sub", c.Subject) != nil {
		return "ws or sub is not an id"
	}
	if len(c.Name) > maxNameLen {
		return "name too long"
	}
	return ""
}

// nearExpiry reports whether the claims' exp or nbf is within a second of
// the line the leeway draws.
func nearExpiry(payload string, now time.Time) bool {
	var c Claims
	if json.Unmarshal([]byte(payload), &c) != nil {
		return false
	}
	near := func(d *jwt.NumericDate, line time.Time) bool {
		return d != nil && d.Sub(line).Abs() < time.Second
	}
	return near(c.ExpiresAt, now.Add(-5*time.Second)) || near(c.NotBefore, now.Add(5*time.Second))
}

func itoa64(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// FuzzCheckFilter: a filter from a request is refused with invalid naming
// filter, or comes back with a known kind, the asking agent as Me, and for
// kind agents 1 to 50 distinct valid ids in the order given.
func FuzzCheckFilter(f *testing.F) {
	for _, s := range [][2]string{
		{"all", ""}, {"", ""}, {"unowned", ""}, {"mine", ""}, {"others", "al"},
		{"agents", "al,bea"}, {"agents", "al,al,bea"}, {"agents", ""}, {"agents", "al,,bea"},
		{"agents", "a/b"}, {"agents", strings.TrimSuffix(strings.Repeat("x,", 51), ",")},
		{"agents", strings.Repeat("y", 129)}, {"ALL", ""}, {"mine\x00", ""}, {"\x00", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, kind, agents string) {
		var in *queues.Filter
		if kind != "\x00" { // stands for a request without a filter
			in = &queues.Filter{Kind: queues.FilterKind(kind)}
			if agents != "" {
				in.Agents = strings.Split(agents, ",")
			}
		}
		out, err := checkFilter(in, "al")
		if err != nil {
			var re *replyError
			if !errors.As(err, &re) || re.Code != codeInvalid || re.Field != "filter" {
				t.Fatalf("kind %q agents %q: got %v, want invalid naming filter", kind, agents, err)
			}
			return
		}
		if out.Me != "al" {
			t.Fatalf("kind %q: Me %q, want al", kind, out.Me)
		}
		switch out.Kind {
		case queues.FilterAll, queues.FilterUnowned, queues.FilterMine, queues.FilterOthers:
			if len(out.Agents) != 0 {
				t.Fatalf("kind %q: got agents %v, want none", out.Kind, out.Agents)
			}
		case queues.FilterAgents:
			if len(out.Agents) == 0 || len(out.Agents) > maxFilterAgents {
				t.Fatalf("agents %q: got %d agents, want 1 to %d", agents, len(out.Agents), maxFilterAgents)
			}
			var want []string
			for _, a := range in.Agents {
				if ValidID("a", a) != nil {
					t.Fatalf("agents %q: accepted %q", agents, a)
				}
				if !slices.Contains(want, a) {
					want = append(want, a)
				}
			}
			if !slices.Equal(out.Agents, want) {
				t.Fatalf("agents %q: got %v, want %v", agents, out.Agents, want)
			}
		default:
			t.Fatalf("kind %q: accepted as %q", kind, out.Kind)
		}
	})
}

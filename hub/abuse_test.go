package hub

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/presencehub/presencehub/queues"
)

// The abuse table: what a broken or hostile client can send, over real
// sockets and real HTTP to a hub on loopback with a real store, and the
// precise outcome each gets. docs/security.md links each row to the
// property it proves.

// abuseOutcome is what came of one abuse: an HTTP status (a refused
// handshake, or an API answer), the code and field of the error the hub
// answered with, and how it closed the socket. Zero values mean none: a
// socket opened, the request succeeded, the socket stays open.
type abuseOutcome struct {
	status int
	code   string
	field  string
	close  websocket.StatusCode
}

func (o abuseOutcome) String() string {
	return fmt.Sprintf("{status %d, code %q, field %q, close %d}", o.status, o.code, o.field, o.close)
}

// abuseEnv is a hub and an HTTP API on one store, with two workspaces:
// acme, where the abuser lives (c1 unowned in new, c2 owned by bea in
// pending), and globex (g1, owned by gus), which must stay invisible.
type abuseEnv struct {
	*env
	api *httptest.Server
}

func newAbuseEnv(t *testing.T) *abuseEnv {
	e := newEnv(t, func(c *Config) { c.Origins = []string{"console.example.com"} })
	a := &abuseEnv{env: e}
	v, err := NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	a.api = httptest.NewServer(NewAPI(APIConfig{Backend: e.store, Verifier: v,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))}))
	t.Cleanup(a.api.Close)

	ctx := context.Background()
	e.workspace("acme", queues.SettingsPatch{})
	e.workspace("globex", queues.SettingsPatch{})
	for _, ag := range []struct{ ws, id string }{{"acme", "al"}, {"acme", "bea"}, {"globex", "gus"}} {
		if _, err := e.store.EnsureAgent(ctx, ag.ws, queues.Agent{ID: ag.id, Name: ag.id, Role: queues.RoleAgent}); err != nil {
			t.Fatal(err)
		}
	}
	e.inbound("acme", "c1", "email")
	c2 := e.inbound("acme", "c2", "email")
	root := queues.Actor{ID: "root", Role: queues.RoleAdmin}
	if _, err := e.store.Assign(ctx, "acme", root, "c2", "bea", c2.Version); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Move(ctx, "acme", root, "c2", queues.QueuePending, 0); err != nil {
		t.Fatal(err)
	}
	g1 := e.inbound("globex", "g1", "email")
	if _, err := e.store.Assign(ctx, "globex", root, "g1", "gus", g1.Version); err != nil {
		t.Fatal(err)
	}
	return a
}

// sendFrame writes one frame of the given type; an error means the hub has
// already closed the socket.
func sendFrame(c *client, typ websocket.MessageType, b []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.conn.Write(ctx, typ, b)
}

// exchange sends one frame and returns its outcome: the code and field of
// the reply with the given id, and whether the socket then still answers a
// request (close 0) or how the hub closed it.
func exchange(t *testing.T, c *client, typ websocket.MessageType, frame []byte, id string) abuseOutcome {
	t.Helper()
	var out abuseOutcome
	if err := sendFrame(c, typ, frame); err != nil {
		out.close = c.closed(5 * time.Second)
		return out
	}
	if r, ok := awaitReply(c, id); ok {
		if !r.OK && r.Error != nil {
			out.code, out.field = r.Error.Code, r.Error.Field
		}
	}
	out.close = stillOpen(t, c)
	return out
}

// awaitReply waits for the reply with the given id, or for the socket to
// close, whichever comes first.
func awaitReply(c *client, id string) (msg, bool) {
	find := func() (msg, bool) {
		for _, m := range c.all() {
			if m.Type == typeReply && string(m.ID) == id {
				return m, true
			}
		}
		return msg{}, false
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if m, ok := find(); ok {
			return m, true
		}
		select {
		case <-c.done:
			return find() // what arrived before the close
		case <-time.After(10 * time.Millisecond):
		}
	}
	return msg{}, false
}

// stillOpen checks that the socket answers a request; if it does not, it
// returns the code the hub closed it with.
func stillOpen(t *testing.T, c *client) websocket.StatusCode {
	t.Helper()
	if err := sendFrame(c, websocket.MessageText, []byte(`{"id":"alive?","op":"settings"}`)); err == nil {
		if r, ok := awaitReply(c, `"alive?"`); ok && r.OK {
			return 0
		}
	}
	return c.closed(5 * time.Second)
}

// nested is n arrays inside each other.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }

// apiCall sends one request to the HTTP API and returns its status and
// error code and field.
func (a *abuseEnv) apiCall(t *testing.T, method, path, tok, body string) abuseOutcome {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, a.api.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.api.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out := abuseOutcome{status: res.StatusCode}
	if res.StatusCode != http.StatusOK {
		var e struct {
			Error apiErrBody `json:"error"`
		}
		b, _ := io.ReadAll(res.Body)
		if err := strict(bytes.TrimSpace(b), &e); err != nil || e.Error.Message == "" {
			t.Errorf("%s %s: answer %q is not the JSON error shape: %v", method, path, b, err)
		}
		out.code, out.field = e.Error.Code, e.Error.Field
	}
	return out
}

// forged tokens, each refused with 401.
func forgedTokens(t *testing.T) map[string]string {
	good := token(t, "acme", "al", queues.RoleAgent, time.Hour)
	parts := strings.Split(good, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	// A payload edited under the original signature.
	tamper := func(from, to string) string {
		if !bytes.Contains(payload, []byte(from)) {
			t.Fatalf("claims %s do not contain %s", payload, from)
		}
		p := bytes.Replace(payload, []byte(from), []byte(to), 1)
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(p) + "." + parts[2]
	}
	// A header naming another algorithm over the same claims and signature.
	withAlg := func(alg string) string {
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + alg + `","typ":"JWT"}`))
		return h + "." + parts[1] + "." + parts[2]
	}
	sign := func(m jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(m, claims(time.Hour)).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"ws edited":        tamper(`"ws":"acme"`, `"ws":"globex"`),
		"role edited":      tamper(`"role":"agent"`, `"role":"admin"`),
		"alg none":         sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType),
		"alg none, no sig": withAlg("none")[:len(withAlg("none"))-len(parts[2])],
		"HS384":            sign(jwt.SigningMethodHS384, testSecret),
		"HS512":            sign(jwt.SigningMethodHS512, testSecret),
		"RS256 header":     withAlg("RS256"),
		"ES256 signed":     sign(jwt.SigningMethodES256, ec),
		"other secret":     sign(jwt.SigningMethodHS256, []byte("not-the-hub-secret-0123456789abcd")),
	}
}

func TestAbuse(t *testing.T) {
	a := newAbuseEnv(t)
	forged := forgedTokens(t)
	al := func() *client { return a.connect("acme", "al") }
	text := func(frame, id string) func(t *testing.T) abuseOutcome {
		return func(t *testing.T) abuseOutcome { return exchange(t, al(), websocket.MessageText, []byte(frame), id) }
	}
	refused := func(tok string, header http.Header) func(t *testing.T) abuseOutcome {
		return func(t *testing.T) abuseOutcome {
			status, code := a.refusal(tok, header)
			return abuseOutcome{status: status, code: code}
		}
	}
	agentTok := token(t, "acme", "al", queues.RoleAgent, time.Hour)

	tests := []struct {
		name string
		run  func(t *testing.T) abuseOutcome
		want abuseOutcome
	}{
		// Frames.
		{"binary frame", func(t *testing.T) abuseOutcome {
			return exchange(t, al(), websocket.MessageBinary, []byte(`{"id":1,"op":"settings"}`), "1")
		}, abuseOutcome{close: websocket.StatusPolicyViolation}},
		{"text that is not JSON", text(`hello hub`, "null"), abuseOutcome{code: codeBadRequest}},
		{"JSON array", text(`[{"id":1,"op":"settings"}]`, "null"), abuseOutcome{code: codeBadRequest}},
		{"JSON string", text(`"settings"`, "null"), abuseOutcome{code: codeBadRequest}},
		{"JSON number", text(`42`, "null"), abuseOutcome{code: codeBadRequest}},
		{"version of the wrong type", text(`{"id":1,"op":"assign","conv":"c1","agent":"al","version":"1"}`, "1"),
			abuseOutcome{code: codeBadRequest}},
		{"filter of the wrong type", text(`{"id":1,"op":"page","queue":"new","filter":"mine"}`, "1"),
			abuseOutcome{code: codeBadRequest}},
		{"id of the wrong type", text(`{"id":{"n":1},"op":"settings"}`, "null"), abuseOutcome{code: codeBadRequest}},
		{"version 1e400", text(`{"id":1,"op":"assign","conv":"c1","agent":"al","version":1e400}`, "1"),
			abuseOutcome{code: codeBadRequest}},
		{"version 2^64", text(`{"id":1,"op":"assign","conv":"c1","agent":"al","version":18446744073709551616}`, "1"),
			abuseOutcome{code: codeBadRequest}},
		{"negative version", text(`{"id":1,"op":"assign","conv":"c1","agent":"al","version":-1}`, "1"),
			abuseOutcome{code: codeBadRequest}},
		{"negative limit", text(`{"id":1,"op":"page","queue":"new","limit":-1}`, "1"),
			abuseOutcome{code: codeInvalid, field: "limit"}},
		{"limit 2^63", text(`{"id":1,"op":"page","queue":"new","limit":9223372036854775807}`, "1"),
			abuseOutcome{code: codeInvalid, field: "limit"}},
		{"boomerang in 1e400", text(`{"id":1,"op":"boomerang","conv":"c2","in":1e400}`, "1"),
			abuseOutcome{code: codeBadRequest}},
		{"boomerang in past the year the store keeps", text(`{"id":1,"op":"boomerang","conv":"c2","in":31570000}`, "1"),
			abuseOutcome{code: codeInvalid, field: "in"}},
		{"10,000 nested arrays in a field", text(`{"id":1,"op":"activity","x":`+nested(10000)+`}`, "null"),
			abuseOutcome{code: codeBadRequest}},
		{"10,000 nested arrays as the frame", text(nested(10000), "null"), abuseOutcome{code: codeBadRequest}},
		{"unknown op", text(`{"id":1,"op":"drop_tables"}`, "1"), abuseOutcome{code: codeUnknownOp}},
		{"admin op as an agent", text(`{"id":1,"op":"update_settings","settings":{"remove_ownership":true}}`, "1"),
			abuseOutcome{code: codeForbidden}},
		{"frame over 64 KiB", text(`{"id":1,"op":"activity","pad":"`+strings.Repeat("x", DefaultMaxFrame)+`"}`, "1"),
			abuseOutcome{close: websocket.StatusMessageTooBig}},
		// RFC 6455 section 8.1: an endpoint that receives a text frame
		// whose payload is not UTF-8 must fail the connection (1007).
		{"invalid UTF-8 in a text frame", text("{\"id\":1,\"op\":\"activity\",\"text\":\"\xff\xfe\"}", "1"),
			abuseOutcome{close: websocket.StatusInvalidFramePayloadData}},

		// Other workspaces.
		{"conversation of another workspace", func(t *testing.T) abuseOutcome {
			return exchange(t, al(), websocket.MessageText, []byte(`{"id":1,"op":"conversation","conv":"g1"}`), "1")
		}, abuseOutcome{code: codeNotFound}},
		{"assign another workspace's conversation", text(`{"id":1,"op":"assign","conv":"g1","agent":"al","version":2}`, "1"),
			abuseOutcome{code: codeNotFound}},
		{"assign to another workspace's agent", func(t *testing.T) abuseOutcome {
			frame := fmt.Sprintf(`{"id":1,"op":"assign","conv":"c1","agent":"gus","version":%d}`, a.conv("acme", "c1").Version)
			return exchange(t, al(), websocket.MessageText, []byte(frame), "1")
		}, abuseOutcome{code: codeNotFound}},
		{"force another workspace's agent offline", func(t *testing.T) abuseOutcome {
			return exchange(t, a.connect("acme", "admin-ann"), websocket.MessageText,
				[]byte(`{"id":1,"op":"force_offline","agent":"gus"}`), "1")
		}, abuseOutcome{code: codeNotFound}},
		// The socket never reads a workspace from a frame: ws and
		// workspace are unknown fields, ignored like any other, and the
		// request is answered in the token's workspace.
		{"ws field naming another workspace", text(`{"id":1,"op":"conversation","conv":"g1","ws":"globex"}`, "1"),
			abuseOutcome{code: codeNotFound}},
		{"workspace field naming another workspace", text(`{"id":1,"op":"conversation","conv":"c1","workspace":"globex"}`, "1"),
			abuseOutcome{}},
		{"another workspace's events", func(t *testing.T) abuseOutcome {
			c := al()
			c.ok("subscribe", map[string]any{"view": "new", "queue": "new"}, nil)
			c.ok("subscribe", map[string]any{"view": "pending", "queue": "pending"}, nil)
			gus := a.connect("globex", "gus")
			gus.ok("subscribe", map[string]any{"view": "new", "queue": "new"}, nil)
			a.inbound("globex", "g1", "email")
			gus.waitEvent("g1 changed", isConv("g1"))
			gus.leave()
			never(t, 300*time.Millisecond, func() bool {
				for _, m := range c.all() {
					if bytes.Contains(m.raw, []byte("g1")) || bytes.Contains(m.raw, []byte("gus")) {
						return true
					}
				}
				return false
			}, "an agent of acme saw globex's conversation or agent")
			return abuseOutcome{close: stillOpen(t, c)}
		}, abuseOutcome{}},

		// Tokens.
		{"one token on three sockets", func(t *testing.T) abuseOutcome {
			for range 3 {
				a.dial(agentTok).hello()
			}
			return abuseOutcome{}
		}, abuseOutcome{}},
		{"expired token", refused(token(t, "acme", "al", queues.RoleAgent, -time.Minute), nil),
			abuseOutcome{status: 401, code: "unauthorized"}},
		// Verify tolerates 5 s of clock skew; the socket's own expiry
		// timer does not, and closes it at once.
		{"token expired 2 s ago (within the leeway)", func(t *testing.T) abuseOutcome {
			c := a.dial(token(t, "acme", "al", queues.RoleAgent, -2*time.Second))
			c.hello()
			return abuseOutcome{close: c.closed(5 * time.Second)}
		}, abuseOutcome{close: CloseTokenExpired}},
		{"token: ws edited", refused(forged["ws edited"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: role edited", refused(forged["role edited"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: alg none", refused(forged["alg none"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: alg none, no signature", refused(forged["alg none, no sig"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: HS384", refused(forged["HS384"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: HS512", refused(forged["HS512"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: RS256 header", refused(forged["RS256 header"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: ES256 signed", refused(forged["ES256 signed"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"token: another secret", refused(forged["other secret"], nil), abuseOutcome{status: 401, code: "unauthorized"}},
		{"service token on the socket", refused(token(t, "acme", "hook", queues.RoleService, time.Hour), nil),
			abuseOutcome{status: 403, code: codeForbidden}},

		// Origins.
		{"foreign Origin", refused(agentTok, http.Header{"Origin": {"https://evil.example"}}),
			abuseOutcome{status: 403, code: codeForbidden}},
		{"Origin look-alike", refused(agentTok, http.Header{"Origin": {"https://console.example.com.evil.example"}}),
			abuseOutcome{status: 403, code: codeForbidden}},
		{"Origin null", refused(agentTok, http.Header{"Origin": {"null"}}), abuseOutcome{status: 403, code: codeForbidden}},
		{"allowed Origin", func(t *testing.T) abuseOutcome {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, _, err := websocket.Dial(ctx, a.wsURL(agentTok), &websocket.DialOptions{
				HTTPHeader: http.Header{"Origin": {"https://console.example.com"}}})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			startClient(t, conn).hello()
			return abuseOutcome{}
		}, abuseOutcome{}},
		{"no Origin (not a browser)", func(t *testing.T) abuseOutcome {
			a.dial(agentTok).hello()
			return abuseOutcome{}
		}, abuseOutcome{}},

		// The HTTP API.
		{"API: ws in the body", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "POST", "/api/v1/conversations/c1/assign", agentTok, `{"agent":"al","version":1,"ws":"globex"}`)
		}, abuseOutcome{status: 400, code: codeInvalid, field: "ws"}},
		{"API: workspace in the body", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "POST", "/api/v1/conversations/c1/move", agentTok, `{"queue":"pending","workspace":"globex"}`)
		}, abuseOutcome{status: 400, code: codeInvalid, field: "workspace"}},
		{"API: ws in the query", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "GET", "/api/v1/conversations?ws=globex", agentTok, "")
		}, abuseOutcome{status: 400, code: codeInvalid, field: "ws"}},
		{"API: another workspace's conversation", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "GET", "/api/v1/conversations/g1", agentTok, "")
		}, abuseOutcome{status: 404, code: codeNotFound}},
		{"API: HS512 token", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "GET", "/api/v1/settings", forged["HS512"], "")
		}, abuseOutcome{status: 401, code: "unauthorized"}},
		{"API: token in the query only", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "GET", "/api/v1/settings?access_token="+agentTok, "", "")
		}, abuseOutcome{status: 401, code: "unauthorized"}},
		{"API: boomerang in past the year the store keeps", func(t *testing.T) abuseOutcome {
			return a.apiCall(t, "PUT", "/api/v1/conversations/c2/boomerang", agentTok, `{"in":31570000}`)
		}, abuseOutcome{status: 400, code: codeInvalid, field: "in"}},

		// Floods.
		{"20 bad requests in 10 s", func(t *testing.T) abuseOutcome {
			c := al()
			for i := range maxBad - 1 {
				if err := sendFrame(c, websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"op":"nope"}`, i)); err != nil {
					t.Fatalf("bad request %d: %v", i, err)
				}
			}
			if code := stillOpen(t, c); code != 0 {
				t.Errorf("closed with %d after %d bad requests, want open", code, maxBad-1)
			}
			out := exchange(t, c, websocket.MessageText, []byte(`{"id":"last","op":"nope"}`), `"last"`)
			return out
		}, abuseOutcome{code: codeUnknownOp, close: websocket.StatusPolicyViolation}},
		{"rate limit", func(t *testing.T) abuseOutcome {
			c := al()
			for i := range reqBurst + maxRefused + 20 {
				if sendFrame(c, websocket.MessageText, fmt.Appendf(nil, `{"id":%d,"op":"activity"}`, i)) != nil {
					break // closed under us
				}
			}
			out := abuseOutcome{close: c.closed(5 * time.Second)}
			for _, m := range c.all() {
				if m.Type == typeReply && !m.OK {
					out.code = m.Error.Code
					break
				}
			}
			return out
		}, abuseOutcome{code: codeRateLimited, close: CloseRateLimited}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.run(t); got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

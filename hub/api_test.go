package hub

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presencehub/presencehub/queues"
)

// The API's tests run a real store (in memory) behind a real HTTP server on
// loopback, and speak to it as an integration would.

var apiSecret = []byte("api-test-secret-0123456789abcdef")

// apiEnv is one store and one API server, both closed at cleanup.
type apiEnv struct {
	t     *testing.T
	store *queues.Store
	srv   *httptest.Server
	obs   *apiCountingObserver
}

func newAPIEnv(t *testing.T, mod ...func(*APIConfig)) *apiEnv {
	t.Helper()
	st, err := queues.Open(queues.Options{InMemory: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	v, err := NewVerifier(apiSecret)
	if err != nil {
		t.Fatalf("verifier: %v", err)
	}
	e := &apiEnv{t: t, store: st, obs: &apiCountingObserver{counts: map[string]int{}}}
	cfg := APIConfig{
		Backend:  st,
		Verifier: v,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil)),
		Observer: e.obs,
		// Most tests send more than a burst of requests; the rate limit
		// has its own test.
		RateLimit: -1,
	}
	for _, m := range mod {
		m(&cfg)
	}
	e.srv = httptest.NewServer(NewAPI(cfg))
	t.Cleanup(e.srv.Close)
	return e
}

// token mints a one-hour token for sub in ws.
func (e *apiEnv) token(ws, sub string, role queues.Role) string {
	e.t.Helper()
	tok, err := Mint(apiSecret, Identity{Workspace: ws, Agent: sub, Name: strings.ToUpper(sub[:1]) + sub[1:], Role: role}, time.Hour)
	if err != nil {
		e.t.Fatalf("mint: %v", err)
	}
	return tok
}

type apiResp struct {
	status int
	header http.Header
	body   []byte
}

// apiErrBody is the error object of a failed request.
type apiErrBody struct {
	Code           string  `json:"code"`
	Message        string  `json:"message"`
	Field          string  `json:"field"`
	CurrentVersion *uint64 `json:"current_version"`
}

func (r apiResp) err(t *testing.T) apiErrBody {
	t.Helper()
	var b struct {
		Error apiErrBody `json:"error"`
	}
	if err := json.Unmarshal(r.body, &b); err != nil || b.Error.Code == "" {
		t.Fatalf("error body %q: not an error object (%v)", r.body, err)
	}
	return b.Error
}

func (r apiResp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// do sends a request. body is nil (none), a string (sent as is) or a value
// to encode; both are sent as application/json.
func (e *apiEnv) do(method, path, token string, body any) apiResp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatalf("encode body: %v", err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(e.t.Context(), method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatalf("new request: %v", err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return e.send(req)
}

func (e *apiEnv) send(req *http.Request) apiResp {
	e.t.Helper()
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", req.Method, req.URL.Path, err)
	}
	return apiResp{status: res.StatusCode, header: res.Header, body: b}
}

// ok sends a request that must succeed and decodes its answer into out,
// which should be fresh: fields the answer omits are left as they were.
func (e *apiEnv) ok(method, path, token string, body, out any) {
	e.t.Helper()
	r := e.do(method, path, token, body)
	if r.status != http.StatusOK {
		e.t.Fatalf("%s %s: got %d %s, want 200", method, path, r.status, r.body)
	}
	if out != nil {
		r.decode(e.t, out)
	}
}

// apiConvResult is what conversation changes answer.
type apiTestResult struct {
	Conversation queues.Conversation `json:"conversation"`
	Duplicate    bool                `json:"duplicate"`
	Seq          uint64              `json:"seq"`
}

// change sends a conversation change that must succeed.
func (e *apiEnv) change(method, path, token string, body any) apiTestResult {
	e.t.Helper()
	var res apiTestResult
	e.ok(method, path, token, body, &res)
	return res
}

func (e *apiEnv) inbound(token, conv, msgID string) apiTestResult {
	e.t.Helper()
	var res apiTestResult
	e.ok("POST", "/api/v1/conversations/"+conv+"/inbound", token, map[string]any{
		"message_id": msgID, "channel": "email", "customer": "Dana", "subject": "Refund", "text": "Where is my refund?",
	}, &res)
	return res
}

func (e *apiEnv) conv(ws, id string) queues.Conversation {
	e.t.Helper()
	c, err := e.store.Conversation(ws, id)
	if err != nil {
		e.t.Fatalf("conversation %s/%s: %v", ws, id, err)
	}
	return c
}

// apiCountingObserver counts rejections by reason.
type apiCountingObserver struct {
	mu     sync.Mutex // guards counts
	counts map[string]int
}

func (o *apiCountingObserver) Rejected(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.counts[reason]++
}

func (o *apiCountingObserver) count(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.counts[reason]
}

func (o *apiCountingObserver) ConnOpened()                     {}
func (o *apiCountingObserver) ConnClosed()                     {}
func (o *apiCountingObserver) Sent(int)                        {}
func (o *apiCountingObserver) BroadcastDuration(time.Duration) {}
func (o *apiCountingObserver) SlowConsumer()                   {}

func TestAPIConversationLifecycle(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	al := e.token("acme", "al", queues.RoleAgent)
	bea := e.token("acme", "bea", queues.RoleAgent)

	// Agents exist from their first request; the service never becomes one.
	var agents struct {
		Agents []queues.Agent `json:"agents"`
	}
	e.ok("GET", "/api/v1/agents", bea, nil, nil)
	e.ok("GET", "/api/v1/agents", svc, nil, nil)
	e.ok("GET", "/api/v1/agents", al, nil, &agents)
	var ids []string
	for _, a := range agents.Agents {
		ids = append(ids, a.ID)
	}
	if !slices.Equal(ids, []string{"al", "bea"}) {
		t.Fatalf("agents: got %v, want [al bea]", ids)
	}

	in := e.inbound(svc, "c1", "m1")
	if in.Duplicate || in.Seq == 0 || in.Conversation.Queue != queues.QueueNew ||
		in.Conversation.Customer != "Dana" || in.Conversation.Channel != "email" {
		t.Fatalf("first inbound: got %+v, want a new conversation in new, not a duplicate, with a seq", in)
	}

	res := e.change("POST", "/api/v1/conversations/c1/assign", al,
		map[string]any{"agent": "bea", "version": in.Conversation.Version})
	if res.Conversation.Owner != "bea" || res.Seq <= in.Seq || res.Conversation.Version != in.Conversation.Version+1 {
		t.Fatalf("assign: got %+v, want owner bea, version +1, a later seq", res)
	}

	res = e.change("POST", "/api/v1/conversations/c1/reply", bea, map[string]any{"text": "On its way", "message_id": "r1"})
	if res.Conversation.Preview != "On its way" {
		t.Fatalf("reply: got preview %q, want the reply's text", res.Conversation.Preview)
	}

	res = e.change("POST", "/api/v1/conversations/c1/unassign", al, map[string]any{"version": res.Conversation.Version})
	if res.Conversation.Owner != "" {
		t.Fatalf("unassign: got owner %q, want none", res.Conversation.Owner)
	}

	res = e.change("POST", "/api/v1/conversations/c1/move", svc, map[string]any{"queue": "pending"})
	if res.Conversation.Queue != queues.QueuePending {
		t.Fatalf("move: got queue %q, want pending", res.Conversation.Queue)
	}

	at := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Second)
	boomerangs := []struct {
		body any
		want time.Time
	}{
		{map[string]any{"preset": "1h"}, time.Now().Add(time.Hour)},
		{map[string]any{"in": 600}, time.Now().Add(10 * time.Minute)},
		{map[string]any{"at": at.Format(time.RFC3339), "version": res.Conversation.Version + 2}, at},
	}
	for _, b := range boomerangs {
		res = e.change("PUT", "/api/v1/conversations/c1/boomerang", al, b.body)
		if d := res.Conversation.Boomerang.Sub(b.want).Abs(); d > time.Minute {
			t.Fatalf("boomerang %v: got %v, want about %v", b.body, res.Conversation.Boomerang, b.want)
		}
	}
	res = e.change("DELETE", "/api/v1/conversations/c1/boomerang", al, nil)
	if !res.Conversation.Boomerang.IsZero() {
		t.Fatalf("cancel boomerang: got %v, want none", res.Conversation.Boomerang)
	}

	var detail struct {
		Conversation queues.Conversation `json:"conversation"`
		History      []queues.AuditEntry `json:"history"`
		Messages     []queues.Message    `json:"messages"`
	}
	e.ok("GET", "/api/v1/conversations/c1", al, nil, &detail)
	if detail.Conversation.Version != res.Conversation.Version {
		t.Fatalf("conversation: got version %d, want %d", detail.Conversation.Version, res.Conversation.Version)
	}
	if len(detail.Messages) != 2 || !detail.Messages[0].Inbound || detail.Messages[1].ID != "r1" {
		t.Fatalf("messages: got %+v, want the inbound then reply r1", detail.Messages)
	}
	var reasons []queues.Reason
	for _, h := range detail.History {
		reasons = append(reasons, h.Reason)
	}
	for _, want := range []queues.Reason{queues.ReasonCreated, queues.ReasonManualAssign, queues.ReasonManualUnassign, queues.ReasonMove} {
		if !slices.Contains(reasons, want) {
			t.Fatalf("history reasons: got %v, want %s among them", reasons, want)
		}
	}
	for _, h := range detail.History {
		if h.Reason == queues.ReasonManualAssign && (h.Actor.ID != "al" || h.Actor.Role != queues.RoleAgent || h.To != "bea") {
			t.Fatalf("assign audit: got %+v, want al (agent) giving it to bea", h)
		}
	}

	var page queues.Page
	e.ok("GET", "/api/v1/conversations?queue=pending", svc, nil, &page)
	if len(page.Items) != 1 || page.Items[0].ID != "c1" || page.Counts.Total != 1 || page.Seq < res.Seq {
		t.Fatalf("pending list: got %+v, want c1 alone at seq >= %d", page, res.Seq)
	}
}

func TestAPISettingsAndAdmin(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	al := e.token("acme", "al", queues.RoleAgent)
	ann := e.token("acme", "ann", queues.RoleAdmin)

	// A workspace only a service has used has the defaults.
	var s struct {
		Settings queues.Settings `json:"settings"`
	}
	e.ok("GET", "/api/v1/settings", svc, nil, &s)
	if s.Settings.OfflineGrace != 60 || s.Settings.IdleAway != 600 || s.Settings.RemoveOwnership {
		t.Fatalf("default settings: got %+v", s.Settings)
	}

	e.ok("PATCH", "/api/v1/settings", ann,
		`{"offline_grace":30,"remove_ownership":true,"auto_ownership":{"email":true}}`, &s)
	if s.Settings.OfflineGrace != 30 || !s.Settings.RemoveOwnership || !s.Settings.AutoOwnership["email"] {
		t.Fatalf("patched settings: got %+v", s.Settings)
	}
	e.ok("GET", "/api/v1/settings", al, nil, &s)
	if s.Settings.OfflineGrace != 30 {
		t.Fatalf("settings after patch: got offline_grace %d, want 30", s.Settings.OfflineGrace)
	}

	var log struct {
		Entries []queues.AdminLogEntry `json:"entries"`
	}
	e.ok("GET", "/api/v1/admin/log?limit=10", ann, nil, &log)
	var fields []string
	for _, l := range log.Entries {
		if l.Actor.ID != "ann" {
			t.Fatalf("admin log entry %+v: got actor %q, want ann", l, l.Actor.ID)
		}
		fields = append(fields, l.Field)
	}
	slices.Sort(fields)
	if want := []string{"auto_ownership.email", "offline_grace", "remove_ownership"}; !slices.Equal(fields, want) {
		t.Fatalf("admin log fields: got %v, want %v", fields, want)
	}

	// Agents are offline until they connect a socket: bea owns c1 in new
	// while offline, which is what the release is for.
	e.ok("GET", "/api/v1/agents", e.token("acme", "bea", queues.RoleAgent), nil, nil)
	in := e.inbound(svc, "c1", "m1")
	e.ok("POST", "/api/v1/conversations/c1/assign", al, map[string]any{"agent": "bea", "version": in.Conversation.Version}, nil)
	var rel struct {
		Released int `json:"released"`
	}
	e.ok("POST", "/api/v1/admin/release-offline", ann, nil, &rel)
	if rel.Released != 1 || e.conv("acme", "c1").Owner != "" {
		t.Fatalf("release: got %d released, owner %q; want 1 and none", rel.Released, e.conv("acme", "c1").Owner)
	}
}

func TestAPIInboundIdempotent(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)

	first := e.inbound(svc, "c1", "m1")
	again := e.inbound(svc, "c1", "m1")
	if !again.Duplicate || again.Conversation.Version != first.Conversation.Version || again.Seq != 0 {
		t.Fatalf("repeated inbound: got %+v, want duplicate, version %d, seq 0", again, first.Conversation.Version)
	}
	if h := e.store.Head("acme"); h != first.Seq {
		t.Fatalf("head after a duplicate: got %d, want %d (nothing committed)", h, first.Seq)
	}
	msgs, err := e.store.Messages("acme", "c1", 0)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("messages: got %d (%v), want 1", len(msgs), err)
	}
	if next := e.inbound(svc, "c1", "m2"); next.Duplicate {
		t.Fatalf("a new message id: got duplicate, want a new message")
	}
}

func TestAPIInboundReopens(t *testing.T) {
	for _, from := range []queues.Queue{queues.QueuePending, queues.QueueResolved} {
		t.Run(string(from), func(t *testing.T) {
			e := newAPIEnv(t)
			svc := e.token("acme", "helpdesk", queues.RoleService)
			e.inbound(svc, "c1", "m1")
			e.ok("POST", "/api/v1/conversations/c1/move", svc, map[string]any{"queue": from}, nil)

			res := e.inbound(svc, "c1", "m2")
			if res.Duplicate || res.Conversation.Queue != queues.QueueNew {
				t.Fatalf("inbound on %s: got %+v, want it back in new", from, res.Conversation)
			}
			h, err := e.store.History("acme", "c1")
			if err != nil {
				t.Fatal(err)
			}
			last := h[len(h)-1]
			if last.Kind != queues.AuditQueue || last.To != "new" || last.Reason != queues.ReasonInbound {
				t.Fatalf("last history entry: got %+v, want a queue move to new for inbound", last)
			}
		})
	}
}

func TestAPIUnauthorized(t *testing.T) {
	e := newAPIEnv(t)
	claims := func(exp time.Time) Claims {
		return Claims{Name: "Al", Workspace: "acme", Role: "agent", RegisteredClaims: jwt.RegisteredClaims{
			Subject: "al", ExpiresAt: jwt.NewNumericDate(exp)}}
	}
	sign := func(m jwt.SigningMethod, key any, c Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatalf("sign %s: %v", m.Alg(), err)
		}
		return s
	}
	later := time.Now().Add(time.Hour)
	cases := []struct {
		name   string
		header string // Authorization
		query  string
		reason string
	}{
		{"none", "", "", RejectNoToken},
		{"basic scheme", "Basic YWw6c2VjcmV0", "", RejectNoToken},
		{"token in query only", "", "?access_token=" + e.token("acme", "al", queues.RoleAgent), RejectNoToken},
		{"garbage", "Bearer not-a-jwt", "", RejectBadToken},
		{"expired", "Bearer " + sign(jwt.SigningMethodHS256, apiSecret, claims(time.Now().Add(-time.Hour))), "", RejectExpired},
		{"alg none", "Bearer " + sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(later)), "", RejectBadToken},
		{"HS512", "Bearer " + sign(jwt.SigningMethodHS512, apiSecret, claims(later)), "", RejectBadToken},
		{"wrong secret", "Bearer " + sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef"), claims(later)), "", RejectBadToken},
		{"bad role", "Bearer " + sign(jwt.SigningMethodHS256, apiSecret, Claims{Name: "Al", Workspace: "acme", Role: "root",
			RegisteredClaims: jwt.RegisteredClaims{Subject: "al", ExpiresAt: jwt.NewNumericDate(later)}}), "", RejectBadToken},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.obs.count(c.reason)
			req, err := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+"/api/v1/settings"+c.query, nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			r := e.send(req)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("got %d %s, want 401", r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Fatalf("WWW-Authenticate: got %q, want a Bearer challenge", got)
			}
			if got := r.err(t).Code; got != "unauthorized" {
				t.Fatalf("code: got %q, want unauthorized", got)
			}
			if got := e.obs.count(c.reason); got != before+1 {
				t.Fatalf("rejections for %s: got %d, want %d", c.reason, got, before+1)
			}
		})
	}
	if _, err := e.store.Agent("acme", "al"); err == nil {
		t.Fatalf("an unauthenticated caller became an agent")
	}
}

func TestAPIForbidden(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	al := e.token("acme", "al", queues.RoleAgent)
	ann := e.token("acme", "ann", queues.RoleAdmin)
	e.inbound(svc, "c1", "m1")
	cases := []struct {
		who          string
		token        string
		method, path string
		body         any
	}{
		{"service", svc, "POST", "/api/v1/conversations/c1/reply", map[string]any{"text": "hi"}},
		{"service", svc, "PATCH", "/api/v1/settings", map[string]any{"offline_grace": 30}},
		{"service", svc, "POST", "/api/v1/admin/release-offline", nil},
		{"service", svc, "GET", "/api/v1/admin/log", nil},
		{"agent", al, "PATCH", "/api/v1/settings", map[string]any{"offline_grace": 30}},
		{"agent", al, "POST", "/api/v1/admin/release-offline", nil},
		{"agent", al, "GET", "/api/v1/admin/log", nil},
		{"agent", al, "POST", "/api/v1/conversations/c1/inbound", map[string]any{"message_id": "m9", "text": "hi"}},
		{"admin", ann, "POST", "/api/v1/conversations/c1/inbound", map[string]any{"message_id": "m9", "text": "hi"}},
	}
	for _, c := range cases {
		t.Run(c.who+" "+c.method+" "+c.path, func(t *testing.T) {
			before := e.obs.count(RejectRole)
			r := e.do(c.method, c.path, c.token, c.body)
			if r.status != http.StatusForbidden || r.err(t).Code != "forbidden" {
				t.Fatalf("got %d %s, want 403 forbidden", r.status, r.body)
			}
			if got := e.obs.count(RejectRole); got != before+1 {
				t.Fatalf("role rejections: got %d, want %d", got, before+1)
			}
		})
	}
	if s, _ := e.store.Settings("acme"); s.OfflineGrace != 60 {
		t.Fatalf("offline_grace after refused patches: got %d, want 60", s.OfflineGrace)
	}
	if c := e.conv("acme", "c1"); c.Version != 1 {
		t.Fatalf("c1 after refused requests: got version %d, want 1", c.Version)
	}
}

func TestAPIBadRequests(t *testing.T) {
	e := newAPIEnv(t, func(c *APIConfig) { c.MaxBody = 4 << 10 })
	svc := e.token("acme", "helpdesk", queues.RoleService)
	al := e.token("acme", "al", queues.RoleAgent)
	ann := e.token("acme", "ann", queues.RoleAdmin)
	e.ok("GET", "/api/v1/agents", e.token("acme", "bea", queues.RoleAgent), nil, nil)
	e.inbound(svc, "c1", "m1")
	e.ok("POST", "/api/v1/conversations/c1/move", svc, map[string]any{"queue": "pending"}, nil)
	v := e.conv("acme", "c1").Version
	past := time.Now().Add(-time.Hour).Format(time.RFC3339)
	big := `{"message_id":"m2","text":"` + strings.Repeat("x", 5<<10) + `"}`

	cases := []struct {
		name         string
		token        string
		method, path string
		body         any
		status       int
		code, field  string
	}{
		{"setting out of range", ann, "PATCH", "/api/v1/settings", `{"offline_grace":91}`, 400, "invalid", "offline_grace"},
		{"negative setting", ann, "PATCH", "/api/v1/settings", `{"idle_away":-1}`, 400, "invalid", "idle_away"},
		{"setting of wrong type", ann, "PATCH", "/api/v1/settings", `{"remove_ownership":"yes"}`, 400, "bad_request", "remove_ownership"},
		{"unknown setting", ann, "PATCH", "/api/v1/settings", `{"offline_grace":30,"grace":30}`, 400, "bad_request", "grace"},
		{"bad channel", ann, "PATCH", "/api/v1/settings", `{"auto_ownership":{"E mail":true}}`, 400, "invalid", "auto_ownership"},
		{"unknown field", al, "POST", "/api/v1/conversations/c1/assign", `{"agent":"bea","version":1,"owner":"x"}`, 400, "bad_request", "owner"},
		{"trailing data", al, "POST", "/api/v1/conversations/c1/assign", `{"agent":"bea","version":1} {}`, 400, "bad_request", ""},
		{"not JSON", al, "POST", "/api/v1/conversations/c1/assign", `agent=bea`, 400, "bad_request", ""},
		{"not an object", al, "POST", "/api/v1/conversations/c1/assign", `[1]`, 400, "bad_request", ""},
		{"empty body", al, "POST", "/api/v1/conversations/c1/assign", ``, 400, "bad_request", ""},
		{"version as text", al, "POST", "/api/v1/conversations/c1/assign", `{"agent":"bea","version":"1"}`, 400, "bad_request", "version"},
		{"missing version", al, "POST", "/api/v1/conversations/c1/assign", `{"agent":"bea"}`, 400, "invalid", "version"},
		{"missing agent", al, "POST", "/api/v1/conversations/c1/assign", fmt.Sprintf(`{"version":%d}`, v), 400, "invalid", "agent"},
		{"unknown agent", al, "POST", "/api/v1/conversations/c1/assign", fmt.Sprintf(`{"agent":"zed","version":%d}`, v), 404, "not_found", ""},
		{"bad id in path", al, "POST", "/api/v1/conversations/c%201/assign", fmt.Sprintf(`{"agent":"bea","version":%d}`, v), 400, "invalid", "id"},
		{"ws smuggled in body", svc, "POST", "/api/v1/conversations/c1/inbound", `{"ws":"other","message_id":"m2","text":"hi"}`, 400, "invalid", "ws"},
		{"workspace smuggled in body", al, "POST", "/api/v1/conversations/c1/move", `{"workspace":"other","queue":"new"}`, 400, "invalid", "workspace"},
		{"ws smuggled in query", al, "GET", "/api/v1/conversations?ws=other", nil, 400, "invalid", "ws"},
		{"ws smuggled in the query of a change", al, "POST", "/api/v1/conversations/c1/move?ws=other", `{"queue":"new"}`, 400, "invalid", "ws"},
		{"query on a change", al, "POST", "/api/v1/conversations/c1/move?queue=new", `{"queue":"new"}`, 400, "bad_request", "queue"},
		{"bad queue", al, "POST", "/api/v1/conversations/c1/move", `{"queue":"archive"}`, 400, "invalid", "queue"},
		{"two boomerang times", al, "PUT", "/api/v1/conversations/c1/boomerang", `{"preset":"1h","in":60}`, 400, "invalid", "preset"},
		{"no boomerang time", al, "PUT", "/api/v1/conversations/c1/boomerang", `{}`, 400, "invalid", "preset"},
		{"unknown preset", al, "PUT", "/api/v1/conversations/c1/boomerang", `{"preset":"2h"}`, 400, "invalid", "preset"},
		{"at not RFC 3339", al, "PUT", "/api/v1/conversations/c1/boomerang", `{"at":"tomorrow"}`, 400, "invalid", "at"},
		{"at in the past", al, "PUT", "/api/v1/conversations/c1/boomerang", `{"at":"` + past + `"}`, 400, "invalid", "at"},
		{"in not positive", al, "PUT", "/api/v1/conversations/c1/boomerang", `{"in":0}`, 400, "invalid", "in"},
		{"new conversation without customer", svc, "POST", "/api/v1/conversations/c2/inbound", `{"message_id":"m1","channel":"email","text":"hi"}`, 400, "invalid", "customer"},
		{"bad filter", al, "GET", "/api/v1/conversations?filter=some", nil, 400, "invalid", "filter"},
		{"agents without filter=agents", al, "GET", "/api/v1/conversations?agents=bea", nil, 400, "invalid", "agents"},
		{"limit too large", al, "GET", "/api/v1/conversations?limit=501", nil, 400, "invalid", "limit"},
		{"bad agent in filter", al, "GET", "/api/v1/conversations?filter=agents&agents=bea,a%2Fb", nil, 400, "invalid", "agents"},
		{"admin log limit too large", ann, "GET", "/api/v1/admin/log?limit=501", nil, 400, "invalid", "limit"},
		{"limit zero", al, "GET", "/api/v1/conversations?limit=0", nil, 400, "invalid", "limit"},
		{"bad cursor", al, "GET", "/api/v1/conversations?cursor=%21%21", nil, 400, "invalid", "cursor"},
		{"unknown parameter", al, "GET", "/api/v1/conversations?queu=new", nil, 400, "bad_request", "queu"},
		{"repeated parameter", al, "GET", "/api/v1/conversations?queue=new&queue=pending", nil, 400, "bad_request", "queue"},
		{"body too large", svc, "POST", "/api/v1/conversations/c1/inbound", big, 413, "too_large", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.token, c.body)
			if r.status != c.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, c.status)
			}
			if got := r.err(t); got.Code != c.code || got.Field != c.field {
				t.Fatalf("got code %q field %q (%s), want code %q field %q", got.Code, got.Field, got.Message, c.code, c.field)
			}
		})
	}
	if c := e.conv("acme", "c1"); c.Version != v || c.Queue != queues.QueuePending || c.Owner != "" {
		t.Fatalf("c1 after refused requests: got %+v, want it unchanged at version %d", c, v)
	}
	if _, err := e.store.Conversation("acme", "c2"); err == nil {
		t.Fatalf("a refused first inbound created c2")
	}

	// The workspace of the token is welcome in the body: only another is refused.
	e.ok("POST", "/api/v1/conversations/c1/move", al, map[string]any{"ws": "acme", "queue": "new"}, nil)
}

func TestAPIBodyTransport(t *testing.T) {
	e := newAPIEnv(t, func(c *APIConfig) { c.MaxBody = 4 << 10 })
	svc := e.token("acme", "helpdesk", queues.RoleService)
	path := e.srv.URL + "/api/v1/conversations/c1/inbound"
	body := `{"message_id":"m1","channel":"email","customer":"Dana","text":"hi"}`
	big := `{"message_id":"m1","channel":"email","customer":"Dana","text":"` + strings.Repeat("x", 5<<10) + `"}`

	cases := []struct {
		name        string
		contentType string
		body        io.Reader
		status      int
		code        string
	}{
		{"no content type", "", strings.NewReader(body), 415, "unsupported_media_type"},
		{"text/plain", "text/plain", strings.NewReader(body), 415, "unsupported_media_type"},
		// Without a length the limit is found while reading, not up front.
		{"too large, streamed", "application/json", io.MultiReader(strings.NewReader(big)), 413, "too_large"},
		{"JSON with charset", "application/json; charset=utf-8", strings.NewReader(body), 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.obs.count(RejectTooBig)
			req, err := http.NewRequestWithContext(t.Context(), "POST", path, c.body)
			if err != nil {
				t.Fatal(err)
			}
			if c.contentType != "" {
				req.Header.Set("Content-Type", c.contentType)
			}
			req.Header.Set("Authorization", "Bearer "+svc)
			r := e.send(req)
			if r.status != c.status {
				t.Fatalf("got %d %s, want %d", r.status, r.body, c.status)
			}
			if c.code != "" && r.err(t).Code != c.code {
				t.Fatalf("got code %q, want %q", r.err(t).Code, c.code)
			}
			if c.status == 413 && e.obs.count(RejectTooBig) != before+1 {
				t.Fatalf("too_big rejections: got %d, want %d", e.obs.count(RejectTooBig), before+1)
			}
		})
	}
}

func TestAPIStaleVersion(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	al := e.token("acme", "al", queues.RoleAgent)
	bea := e.token("acme", "bea", queues.RoleAgent)
	e.ok("GET", "/api/v1/agents", bea, nil, nil)
	seen := e.inbound(svc, "c1", "m1").Conversation.Version

	// Al and Bea both saw version `seen`; Al is first.
	var won apiTestResult
	e.ok("POST", "/api/v1/conversations/c1/assign", al, map[string]any{"agent": "al", "version": seen}, &won)

	cases := []struct {
		name, method, path string
		body               any
	}{
		{"assign", "POST", "/api/v1/conversations/c1/assign", map[string]any{"agent": "bea", "version": seen}},
		{"unassign", "POST", "/api/v1/conversations/c1/unassign", map[string]any{"version": seen}},
		{"move", "POST", "/api/v1/conversations/c1/move", map[string]any{"queue": "pending", "version": seen}},
		{"boomerang", "PUT", "/api/v1/conversations/c1/boomerang", map[string]any{"preset": "1h", "version": seen}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, bea, c.body)
			if r.status != http.StatusConflict {
				t.Fatalf("got %d %s, want 409", r.status, r.body)
			}
			got := r.err(t)
			if got.Code != "conflict" || got.CurrentVersion == nil || *got.CurrentVersion != won.Conversation.Version {
				t.Fatalf("got %+v, want conflict with current_version %d", got, won.Conversation.Version)
			}
		})
	}
	if c := e.conv("acme", "c1"); c.Owner != "al" || c.Version != won.Conversation.Version {
		t.Fatalf("c1 after stale changes: got owner %q version %d, want al at %d", c.Owner, c.Version, won.Conversation.Version)
	}
}

func TestAPICrossWorkspace(t *testing.T) {
	e := newAPIEnv(t)
	acmeSvc := e.token("acme", "helpdesk", queues.RoleService)
	e.ok("GET", "/api/v1/agents", e.token("acme", "bea", queues.RoleAgent), nil, nil)
	e.inbound(acmeSvc, "c1", "m1")
	before := e.conv("acme", "c1")
	head := e.store.Head("acme")

	// The same agent id in another workspace is another agent.
	globex := e.token("globex", "bea", queues.RoleAgent)
	globexSvc := e.token("globex", "helpdesk", queues.RoleService)
	cases := []struct {
		token        string
		method, path string
		body         any
	}{
		{globex, "GET", "/api/v1/conversations/c1", nil},
		{globexSvc, "GET", "/api/v1/conversations/c1", nil},
		{globex, "POST", "/api/v1/conversations/c1/assign", map[string]any{"agent": "bea", "version": before.Version}},
		{globex, "POST", "/api/v1/conversations/c1/unassign", map[string]any{"version": before.Version}},
		{globex, "POST", "/api/v1/conversations/c1/reply", map[string]any{"text": "hi", "message_id": "r1"}},
		{globexSvc, "POST", "/api/v1/conversations/c1/move", map[string]any{"queue": "resolved"}},
		{globex, "PUT", "/api/v1/conversations/c1/boomerang", map[string]any{"preset": "1h"}},
		{globex, "DELETE", "/api/v1/conversations/c1/boomerang", nil},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := e.do(c.method, c.path, c.token, c.body)
			if r.status != http.StatusNotFound || r.err(t).Code != "not_found" {
				t.Fatalf("got %d %s, want 404 not_found", r.status, r.body)
			}
		})
	}
	var page queues.Page
	e.ok("GET", "/api/v1/conversations", globex, nil, &page)
	if len(page.Items) != 0 || page.Counts.Total != 0 {
		t.Fatalf("globex's list: got %+v, want it empty", page)
	}

	// An inbound with the same ids starts globex's own conversation.
	if res := e.inbound(globexSvc, "c1", "m1"); res.Duplicate || res.Conversation.Version != 1 {
		t.Fatalf("globex inbound: got %+v, want a new conversation of globex", res)
	}
	if after := e.conv("acme", "c1"); after != before {
		t.Fatalf("acme's c1: got %+v, want it unchanged %+v", after, before)
	}
	if h := e.store.Head("acme"); h != head {
		t.Fatalf("acme's head: got %d, want %d", h, head)
	}
	if msgs, _ := e.store.Messages("acme", "c1", 0); len(msgs) != 1 {
		t.Fatalf("acme's c1 messages: got %d, want 1", len(msgs))
	}
}

func TestAPIPagination(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	const n = 120
	for i := range n {
		e.inbound(svc, fmt.Sprintf("c%03d", i), "m1")
	}

	seen := map[string]bool{}
	pages, cursor := 0, ""
	for {
		path := "/api/v1/conversations?queue=new&filter=all&limit=50"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var p queues.Page
		e.ok("GET", path, svc, nil, &p)
		pages++
		if p.Counts.Total != n || p.Counts.Matching != n {
			t.Fatalf("page %d counts: got %+v, want total and matching %d", pages, p.Counts, n)
		}
		for _, c := range p.Items {
			if seen[c.ID] {
				t.Fatalf("page %d: %s again", pages, c.ID)
			}
			seen[c.ID] = true
		}
		if want := min(50, n-50*(pages-1)); len(p.Items) != want {
			t.Fatalf("page %d: got %d items, want %d", pages, len(p.Items), want)
		}
		if p.Next == "" {
			break
		}
		if pages > n/50+1 {
			t.Fatalf("still paging after %d pages", pages)
		}
		cursor = p.Next
	}
	if pages != 3 || len(seen) != n {
		t.Fatalf("got %d pages with %d conversations, want 3 pages with %d", pages, len(seen), n)
	}
}

func TestAPIListFilters(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	al := e.token("acme", "al", queues.RoleAgent)
	for _, tok := range []string{al, e.token("acme", "bea", queues.RoleAgent), e.token("acme", "cy", queues.RoleAgent)} {
		e.ok("GET", "/api/v1/agents", tok, nil, nil)
	}
	owners := map[string]string{"c1": "al", "c2": "bea", "c3": "cy", "c4": "", "c5": "al"}
	for id, owner := range owners {
		in := e.inbound(svc, id, "m1")
		if owner != "" {
			e.ok("POST", "/api/v1/conversations/"+id+"/assign", svc, map[string]any{"agent": owner, "version": in.Conversation.Version}, nil)
		}
	}
	cases := []struct {
		query string
		want  []string
	}{
		{"", []string{"c1", "c2", "c3", "c4", "c5"}},
		{"?filter=unowned", []string{"c4"}},
		{"?filter=mine", []string{"c1", "c5"}},
		{"?filter=others", []string{"c2", "c3"}},
		{"?filter=agents&agents=bea,cy", []string{"c2", "c3"}},
		{"?queue=pending", nil},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			var p queues.Page
			e.ok("GET", "/api/v1/conversations"+c.query, al, nil, &p)
			var got []string
			for _, it := range p.Items {
				got = append(got, it.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, c.want) || p.Counts.Matching != len(c.want) {
				t.Fatalf("got %v (matching %d), want %v", got, p.Counts.Matching, c.want)
			}
		})
	}
}

func TestAPIRateLimit(t *testing.T) {
	e := newAPIEnv(t, func(c *APIConfig) { c.RateLimit = 5 }) // burst 10
	al := e.token("acme", "al", queues.RoleAgent)
	bea := e.token("acme", "bea", queues.RoleAgent)

	for i := range 10 {
		if r := e.do("GET", "/api/v1/settings", al, nil); r.status != http.StatusOK {
			t.Fatalf("request %d of the burst: got %d %s, want 200", i+1, r.status, r.body)
		}
	}
	r := e.do("GET", "/api/v1/settings", al, nil)
	if r.status != http.StatusTooManyRequests || r.err(t).Code != "rate_limited" {
		t.Fatalf("past the burst: got %d %s, want 429 rate_limited", r.status, r.body)
	}
	if secs, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || secs != 1 {
		t.Fatalf("Retry-After: got %q, want 1 (a token every 200ms)", r.header.Get("Retry-After"))
	}
	if e.obs.count(RejectRateLimited) != 1 {
		t.Fatalf("rate_limited rejections: got %d, want 1", e.obs.count(RejectRateLimited))
	}
	if r := e.do("GET", "/api/v1/settings", bea, nil); r.status != http.StatusOK {
		t.Fatalf("another agent: got %d, want 200 (buckets are per agent)", r.status)
	}

	// Refused requests spend nothing, so polling recovers within a token's time.
	deadline := time.Now().Add(5 * time.Second)
	for e.do("GET", "/api/v1/settings", al, nil).status != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatalf("still rate limited after 5s, want a token back after 200ms")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAPIRouting(t *testing.T) {
	e := newAPIEnv(t)
	al := e.token("acme", "al", queues.RoleAgent)
	cases := []struct {
		method, path string
		status       int
		code         string
		allow        []string
	}{
		{"DELETE", "/api/v1/agents", 405, "method_not_allowed", []string{"GET", "HEAD"}},
		{"GET", "/api/v1/conversations/c1/assign", 405, "method_not_allowed", []string{"POST"}},
		{"POST", "/api/v1/settings", 405, "method_not_allowed", []string{"GET", "HEAD", "PATCH"}},
		{"GET", "/api/v1/conversations/c1/boomerang", 405, "method_not_allowed", []string{"DELETE", "PUT"}},
		{"GET", "/api/v1/nothing", 404, "not_found", nil},
		{"GET", "/api/v1/conversations/c1/history", 404, "not_found", nil},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := e.do(c.method, c.path, al, nil)
			if r.status != c.status || r.err(t).Code != c.code {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, c.status, c.code)
			}
			if c.allow != nil {
				var got []string
				for m := range strings.SplitSeq(r.header.Get("Allow"), ",") {
					got = append(got, strings.TrimSpace(m))
				}
				slices.Sort(got)
				if !slices.Equal(got, c.allow) {
					t.Fatalf("Allow: got %v, want %v", got, c.allow)
				}
			}
		})
	}
}

func TestAPIStoreUnavailable(t *testing.T) {
	e := newAPIEnv(t)
	svc := e.token("acme", "helpdesk", queues.RoleService)
	in := e.inbound(svc, "c1", "m1")
	e.store.Close()
	r := e.do("POST", "/api/v1/conversations/c1/move", svc, map[string]any{"queue": "pending", "version": in.Conversation.Version})
	if r.status != http.StatusServiceUnavailable || r.err(t).Code != "unavailable" {
		t.Fatalf("with the store closed: got %d %s, want 503 unavailable", r.status, r.body)
	}
}

package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/sync/errgroup"

	"github.com/presencehub/presencehub/presence"
	"github.com/presencehub/presencehub/queues"
)

// The end-to-end harness: the real store (in memory), the real presence
// tracker, a hub behind httptest.NewServer, and real WebSocket clients.

var testSecret = []byte("hub-test-secret-0123456789abcdef")

// testGrace is the offline grace of every test workspace: short, so a test
// can wait it out.
const testGrace = 2 * time.Second

type env struct {
	t       testing.TB
	store   *queues.Store
	tracker *presence.Tracker
	hub     *Hub
	srv     *httptest.Server
	obs     *testObserver
}

// newEnv starts a store, a tracker, the glue between them and a hub, and
// stops them all when the test ends. tweak may change the hub's Config.
func newEnv(t testing.TB, tweak ...func(*Config)) *env {
	t.Helper()
	store, err := queues.Open(queues.Options{InMemory: true})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	e := &env{t: t, store: store, obs: &testObserver{}}
	sink := newPresenceSink(t, store)
	e.tracker = presence.NewTracker(sink.push, presence.Timing{Grace: testGrace})
	v, err := NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Backend:  store,
		Presence: e.tracker,
		Verifier: v,
		Logger:   slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Observer: e.obs,
	}
	for _, f := range tweak {
		f(&cfg)
	}
	e.hub = New(cfg)
	store.SetPublisher(settingsTee{tracker: e.tracker, next: e.hub})

	ctx, cancel := context.WithCancel(context.Background())
	var g errgroup.Group
	g.Go(func() error { return e.tracker.Run(ctx) }) // ends with cancel
	g.Go(func() error { sink.run(ctx); return nil }) // ends with cancel
	g.Go(func() error {                              // ends with cancel
		if err := store.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	})
	// As in the server: handshakes are answered by the Front, and every
	// other request is handed on to net/http.
	e.srv = httptest.NewUnstartedServer(e.hub)
	ln := e.srv.Listener
	front := NewFront(e.hub, ln, "/ws", 10*time.Second)
	e.srv.Listener = front.Listener()
	e.srv.Start()
	frontDone := make(chan error, 1)
	go func() { frontDone <- front.Serve() }() // ends when e.srv.Close closes the front
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := e.hub.Shutdown(sctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		e.srv.Close()
		if err := front.Shutdown(sctx); err != nil {
			t.Errorf("front shutdown: %v", err)
		}
		if err := <-frontDone; !errors.Is(err, net.ErrClosed) {
			t.Errorf("front: %v", err)
		}
		cancel()
		if err := g.Wait(); err != nil {
			t.Errorf("background: %v", err)
		}
		if err := store.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return e
}

// workspace creates a workspace with the test grace and the given settings.
func (e *env) workspace(ws string, patch queues.SettingsPatch) {
	e.t.Helper()
	ctx := context.Background()
	if err := e.store.EnsureWorkspace(ctx, ws); err != nil {
		e.t.Fatalf("workspace %s: %v", ws, err)
	}
	grace := int(testGrace / time.Second)
	patch.OfflineGrace = &grace
	if _, err := e.store.UpdateSettings(ctx, ws, queues.Actor{ID: "root", Role: queues.RoleAdmin}, patch); err != nil {
		e.t.Fatalf("settings of %s: %v", ws, err)
	}
}

// inbound creates (or adds a message to) a conversation as the helpdesk
// backend would.
func (e *env) inbound(ws, conv, channel string) queues.Conversation {
	e.t.Helper()
	res, err := e.store.Inbound(context.Background(), ws, queues.Inbound{
		Conversation: conv, MessageID: fmt.Sprintf("%s-%d", conv, time.Now().UnixNano()),
		Channel: channel, Customer: "Customer of " + conv, Text: "hello",
	})
	if err != nil {
		e.t.Fatalf("inbound %s/%s: %v", ws, conv, err)
	}
	return res.Conv
}

func (e *env) conv(ws, id string) queues.Conversation {
	e.t.Helper()
	c, err := e.store.Conversation(ws, id)
	if err != nil {
		e.t.Fatalf("conversation %s/%s: %v", ws, id, err)
	}
	return c
}

func (e *env) agentStatus(ws, id string) queues.Status {
	a, err := e.store.Agent(ws, id)
	if err != nil {
		return ""
	}
	return a.Status
}

func token(t testing.TB, ws, agent string, role queues.Role, ttl time.Duration) string {
	t.Helper()
	tok, err := Mint(testSecret, Identity{Workspace: ws, Agent: agent, Name: strings.ToUpper(agent[:1]) + agent[1:], Role: role}, ttl)
	if err != nil {
		t.Fatalf("mint: %v", err)
	}
	return tok
}

// wsURL is the hub's socket URL with a token and extra query parameters.
func (e *env) wsURL(tok string, query ...string) string {
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws?access_token=" + url.QueryEscape(tok)
	for i := 0; i+1 < len(query); i += 2 {
		u += "&" + query[i] + "=" + url.QueryEscape(query[i+1])
	}
	return u
}

// connect opens a socket for an agent (role agent unless admin is in its
// name) and waits for hello.
func (e *env) connect(ws, agent string, query ...string) *client {
	e.t.Helper()
	role := queues.RoleAgent
	if strings.HasPrefix(agent, "admin") {
		role = queues.RoleAdmin
	}
	c := e.dial(token(e.t, ws, agent, role, time.Hour), query...)
	c.hello()
	return c
}

// dial opens a socket and starts reading it, without waiting for hello.
func (e *env) dial(tok string, query ...string) *client {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, e.wsURL(tok, query...), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		e.t.Fatalf("dial: %v (HTTP %d)", err, status)
	}
	return startClient(e.t, conn)
}

// testObserver counts what the hub reports.
type testObserver struct {
	opened, closed, sent, slow, broadcasts atomic.Int64
	mu                                     sync.Mutex
	rejected                               map[string]int
}

func (o *testObserver) ConnOpened()                     { o.opened.Add(1) }
func (o *testObserver) ConnClosed()                     { o.closed.Add(1) }
func (o *testObserver) Sent(n int)                      { o.sent.Add(int64(n)) }
func (o *testObserver) BroadcastDuration(time.Duration) { o.broadcasts.Add(1) }
func (o *testObserver) SlowConsumer()                   { o.slow.Add(1) }
func (o *testObserver) Rejected(reason string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rejected == nil {
		o.rejected = make(map[string]int)
	}
	o.rejected[reason]++
}

func (o *testObserver) rejections(reason string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.rejected[reason]
}

// presenceSink commits the tracker's updates to the store in the order the
// tracker made them, as cmd/presencehub does: push never blocks, run
// commits.
type presenceSink struct {
	t     testing.TB
	store *queues.Store

	mu      sync.Mutex // guards pending
	pending []presence.Update
	wake    chan struct{} // capacity 1
}

func newPresenceSink(t testing.TB, store *queues.Store) *presenceSink {
	return &presenceSink{t: t, store: store, wake: make(chan struct{}, 1)}
}

func (p *presenceSink) push(u presence.Update) {
	p.mu.Lock()
	p.pending = append(p.pending, u)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *presenceSink) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		p.mu.Lock()
		batch := p.pending
		p.pending = nil
		p.mu.Unlock()
		for _, u := range batch {
			_, err := p.store.ApplyPresence(ctx, u.Workspace, queues.PresenceUpdate{
				Agent: u.Agent, Status: queues.Status(u.Status), Reason: string(u.Reason),
				ManualAway: u.ManualAway, GraceDeadline: u.GraceDeadline, LastSeen: u.LastSeen,
			})
			if err != nil && ctx.Err() == nil {
				p.t.Errorf("apply presence %+v: %v", u, err)
			}
		}
	}
}

// settingsTee hands new settings to the tracker before passing events on.
type settingsTee struct {
	tracker *presence.Tracker
	next    queues.Publisher
}

func (s settingsTee) Publish(ws string, events []queues.Event) {
	for _, ev := range events {
		if ev.Kind == queues.EventSettings && ev.Settings != nil {
			s.tracker.Configure(ws, presence.Timing{
				Grace:      time.Duration(ev.Settings.OfflineGrace) * time.Second,
				IdleAway:   time.Duration(ev.Settings.IdleAway) * time.Second,
				IdleLogout: time.Duration(ev.Settings.IdleLogout) * time.Second,
			})
		}
	}
	s.next.Publish(ws, events)
}

// testWriter sends the hub's log to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// eventually polls cond every 10 ms until it holds or timeout passes.
func eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// msg is one hub message as a client received it.
type msg struct {
	raw  json.RawMessage
	Type string          `json:"type"`
	ID   json.RawMessage `json:"id"`
	Seq  uint64          `json:"seq"`
	Kind string          `json:"kind"`
	OK   bool            `json:"ok"`
	// Result and Error of a reply.
	Result json.RawMessage `json:"result"`
	Error  *replyError     `json:"error"`
}

// event decodes an event message.
func (m msg) event(t testing.TB) eventMsg {
	t.Helper()
	var ev eventMsg
	if err := json.Unmarshal(m.raw, &ev); err != nil {
		t.Fatalf("decode event %s: %v", m.raw, err)
	}
	return ev
}

// client is a test's WebSocket client: a goroutine reads every frame,
// splits it into messages and keeps them.
type client struct {
	t    testing.TB
	conn *websocket.Conn
	ids  atomic.Int64
	done chan struct{} // closed when the reading goroutine ends

	mu     sync.Mutex // guards msgs, frames and err
	msgs   []msg
	frames int
	err    error // why reading ended
}

func startClient(t testing.TB, conn *websocket.Conn) *client {
	conn.SetReadLimit(-1)
	c := &client{t: t, conn: conn, done: make(chan struct{})}
	go c.read() // ends when the socket closes
	t.Cleanup(func() {
		c.conn.CloseNow()
		<-c.done
	})
	return c
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, b, err := c.conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
		var got []msg
		for line := range bytes.SplitSeq(b, []byte("\n")) {
			m := msg{raw: bytes.Clone(line)}
			if err := json.Unmarshal(line, &m); err != nil {
				m.Type = "undecodable: " + err.Error()
			}
			got = append(got, m)
		}
		c.mu.Lock()
		c.frames++
		c.msgs = append(c.msgs, got...)
		c.mu.Unlock()
	}
}

// all returns every message received so far.
func (c *client) all() []msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]msg(nil), c.msgs...)
}

// events returns the events received so far that match f (nil: all).
func (c *client) events(f func(eventMsg) bool) []eventMsg {
	var out []eventMsg
	for _, m := range c.all() {
		if m.Type != typeEvent {
			continue
		}
		ev := m.event(c.t)
		if f == nil || f(ev) {
			out = append(out, ev)
		}
	}
	return out
}

// waitEvent waits for an event matching f and returns it.
func (c *client) waitEvent(what string, f func(eventMsg) bool) eventMsg {
	c.t.Helper()
	var found eventMsg
	eventually(c.t, 5*time.Second, func() bool {
		evs := c.events(f)
		if len(evs) > 0 {
			found = evs[0]
			return true
		}
		return false
	}, "no event: %s", what)
	return found
}

// hello waits for the first message and checks it is hello.
func (c *client) hello() helloMsg {
	c.t.Helper()
	eventually(c.t, 5*time.Second, func() bool { return len(c.all()) > 0 }, "no hello")
	m := c.all()[0]
	if m.Type != typeHello {
		c.t.Fatalf("first message: got %s, want hello", m.raw)
	}
	var h helloMsg
	if err := json.Unmarshal(m.raw, &h); err != nil {
		c.t.Fatalf("decode hello: %v", err)
	}
	return h
}

// send writes one raw frame.
func (c *client) send(frame string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.conn.Write(ctx, websocket.MessageText, []byte(frame)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// reply waits for the reply whose id is id.
func (c *client) reply(id string) msg {
	c.t.Helper()
	var r msg
	eventually(c.t, 5*time.Second, func() bool {
		for _, m := range c.all() {
			if m.Type == typeReply && string(m.ID) == id {
				r = m
				return true
			}
		}
		return false
	}, "no reply with id %s", id)
	return r
}

// req sends a request and waits for its reply.
func (c *client) req(op string, fields map[string]any) msg {
	c.t.Helper()
	id := c.ids.Add(1)
	body := map[string]any{"id": id, "op": op}
	for k, v := range fields {
		body[k] = v
	}
	b, err := json.Marshal(body)
	if err != nil {
		c.t.Fatal(err)
	}
	c.send(string(b))
	return c.reply(fmt.Sprint(id))
}

// ok sends a request, requires success and decodes the result into out
// (when not nil).
func (c *client) ok(op string, fields map[string]any, out any) {
	c.t.Helper()
	r := c.req(op, fields)
	if !r.OK {
		c.t.Fatalf("%s %v: got error %+v, want ok", op, fields, r.Error)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result, out); err != nil {
			c.t.Fatalf("decode %s result %s: %v", op, r.Result, err)
		}
	}
}

// fails sends a request and requires the error code.
func (c *client) fails(op string, fields map[string]any, code string) *replyError {
	c.t.Helper()
	r := c.req(op, fields)
	if r.OK || r.Error == nil || r.Error.Code != code {
		c.t.Fatalf("%s %v: got %s, want error %s", op, fields, r.raw, code)
	}
	return r.Error
}

// closed waits for the hub to close the socket and returns the close code
// (-1 for a close without a close frame).
func (c *client) closed(timeout time.Duration) websocket.StatusCode {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		c.t.Fatalf("socket still open after %v", timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return websocket.CloseStatus(c.err)
}

// leave closes the socket from the client's side, politely.
func (c *client) leave() {
	c.conn.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
}

// maxSeq is the highest seq the client has seen in hello, replies and
// events, as a resuming client keeps it.
func (c *client) maxSeq() uint64 {
	var max uint64
	for _, m := range c.all() {
		switch m.Type {
		case typeHello, typeEvent:
			max = maxU(max, m.Seq)
		case typeReply:
			var r struct {
				Seq uint64 `json:"seq"`
			}
			json.Unmarshal(m.Result, &r)
			max = maxU(max, r.Seq)
		}
	}
	return max
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// refusal dials and expects an HTTP refusal: no socket, the status, and a
// JSON error.
func (e *env) refusal(tok string, header http.Header) (int, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + "/ws"
	if tok != "" {
		u += "?access_token=" + url.QueryEscape(tok)
	}
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err == nil {
		conn.CloseNow()
		e.t.Fatalf("dial: got a socket, want a refusal")
	}
	if resp == nil {
		e.t.Fatalf("dial: %v, with no HTTP response", err)
	}
	var body struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	// coder/websocket keeps the first bytes of a refused handshake's body.
	if resp.Body != nil {
		json.NewDecoder(resp.Body).Decode(&body)
	}
	return resp.StatusCode, body.Error.Code
}

// never polls cond every 10 ms for d and fails if it ever holds: how a test
// checks that something does not happen.
func never(t testing.TB, d time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf(format, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// Connection lifecycle: slow consumers, liveness, limits, closes.

// bigEvents are agent events padded to size bytes, seqs from seq on. They
// are published straight to the hub: the test is about the transport, and
// filling socket buffers with real commits would take tens of thousands.
func bigEvents(seq uint64, n, size int) []queues.Event {
	out := make([]queues.Event, n)
	for i := range out {
		s := seq + uint64(i)
		wire := fmt.Appendf(nil, `{"type":"event","seq":%d,"kind":"agent","actor":{"role":"system"},"agent_record":{"id":"pad","name":"%s","role":"agent","status":"offline"}}`,
			s, strings.Repeat("x", size))
		out[i] = queues.Event{Seq: s, Kind: queues.EventAgent, Wire: wire}
	}
	return out
}

func TestSlowConsumerClosedOthersFlow(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueue = 16 })
	e.workspace("acme", queues.SettingsPatch{})
	fast := e.connect("acme", "al")

	slowConn := stalledClient(t, e, "acme", "bea")
	// Until the stalled client's socket buffers fill and its queue overflows.
	seq := e.store.Head("acme") + 1000
	published := publishUntilSlow(t, e, "acme", seq)
	t.Logf("slow consumer after %d events of 64 KiB", published)

	// The stalled client, reading again, finds everything up to the
	// close, then 4008. It reads at once: its close frame waits behind the
	// write in progress, which has WriteTimeout to finish.
	closed := make(chan error, 1)
	go func() { // ends when the hub closes the socket
		var err error
		for err == nil {
			_, _, err = slowConn.Read(context.Background())
		}
		closed <- err
	}()

	// The reading client got every event, and keeps getting the store's.
	eventually(t, 10*time.Second, func() bool {
		return len(fast.events(func(ev eventMsg) bool { return ev.Seq >= seq })) == published
	}, "the reading client did not get all %d events", published)
	c := e.inbound("acme", "c1", "email")
	fast.ok("subscribe", map[string]any{"view": "v", "queue": "new"}, nil)
	fast.ok("assign", map[string]any{"conv": "c1", "agent": "al", "version": c.Version}, nil)
	fast.waitEvent("c1 assigned", isConv("c1"))

	select {
	case err := <-closed:
		if code := websocket.CloseStatus(err); code != CloseSlowConsumer {
			t.Errorf("stalled client: got %v (code %d), want close 4008", err, code)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the slow consumer's socket is still open")
	}
	eventually(t, 5*time.Second, func() bool { return e.hub.Connections() == 1 }, "the slow consumer is still registered")
}

func TestSilentClientClosedWithinPongTimeout(t *testing.T) {
	// Short, but not so short that a loaded machine delays the reading
	// client's pongs past the timeout.
	const ping, pong = 150 * time.Millisecond, 600 * time.Millisecond
	e := newEnv(t, func(c *Config) { c.PingInterval, c.PongTimeout = ping, pong })
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al") // reads, so it answers pings

	// A client that never reads answers no ping.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	silent, _, err := websocket.Dial(ctx, e.wsURL(token(t, "acme", "bea", queues.RoleAgent, time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.CloseNow()
	opened := time.Now()
	eventually(t, 5*time.Second, func() bool { return e.hub.Connections() == 2 }, "bea not connected")
	eventually(t, 3*time.Second, func() bool { return e.hub.Connections() == 1 }, "the silent client is still connected")
	took := time.Since(opened)
	t.Logf("silent client closed %v after connecting (ping %v, timeout %v)", took.Round(time.Millisecond), ping, pong)
	if took < pong {
		t.Errorf("closed after %v, before the %v pong timeout", took, pong)
	}
	if took > pong+2*time.Second {
		t.Errorf("closed after %v, want within about %v", took, pong)
	}
	// It counts as a disconnect: bea goes offline after the grace.
	al.waitEventWithin(testGrace+slack, "bea offline", isPresence("bea", queues.StatusOffline))
	// The reading client is alive and well, past many pings.
	never(t, 4*pong, func() bool { return e.hub.Connections() != 1 }, "the reading client was closed")
	al.ok("settings", nil, nil)
}

func TestOversizedFrameCloses1009(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	al.send(`{"id":1,"op":"activity","pad":"` + strings.Repeat("x", DefaultMaxFrame) + `"}`)
	if code := al.closed(5 * time.Second); code != websocket.StatusMessageTooBig {
		t.Errorf("close: got %d, want 1009", code)
	}
	eventually(t, time.Second, func() bool { return e.obs.rejections(RejectTooBig) == 1 }, "too_big not counted")
}

func TestMalformedRequestsGetErrorReplies(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")

	al.send(`this is not json`)
	if r := al.reply("null"); r.OK || r.Error.Code != codeBadRequest {
		t.Errorf("not JSON: got %s, want bad_request", r.raw)
	}
	al.send(`{"id":"x1","op":"assign","version":"six"}`)
	if r := al.reply(`"x1"`); r.OK || r.Error.Code != codeBadRequest || !strings.Contains(r.Error.Message, "version") {
		t.Errorf("wrong type: got %s, want bad_request naming version", r.raw)
	}
	al.send(`{"id":"x2"}`)
	if r := al.reply(`"x2"`); r.OK || r.Error.Code != codeBadRequest {
		t.Errorf("no op: got %s, want bad_request", r.raw)
	}
	al.fails("teleport", nil, codeUnknownOp)
	al.fails("assign", map[string]any{"agent": "al"}, codeInvalid)
	al.fails("subscribe", map[string]any{"view": "v", "queue": "resolved"}, codeInvalid)
	al.fails("page", map[string]any{"queue": "new", "limit": 501}, codeInvalid)
	al.fails("status", map[string]any{"status": "asleep"}, codeInvalid)
	al.fails("boomerang", map[string]any{"conv": "c1", "preset": "1h", "in": 60}, codeInvalid)

	// The socket lives on.
	var s settingsResult
	al.ok("settings", nil, &s)
	if s.Settings.OfflineGrace != int(testGrace/time.Second) {
		t.Errorf("settings: got grace %d, want %d", s.Settings.OfflineGrace, int(testGrace/time.Second))
	}
	if n := e.hub.Connections(); n != 1 {
		t.Errorf("connections: got %d, want 1", n)
	}
}

func TestFloodOfBadRequestsCloses1008(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	for i := range maxBad {
		al.send(fmt.Sprintf(`{"id":%d,"op":"nope"}`, i))
	}
	if code := al.closed(5 * time.Second); code != websocket.StatusPolicyViolation {
		t.Errorf("close: got %d, want 1008", code)
	}
	replies := 0
	for _, m := range al.all() {
		if m.Type == typeReply {
			replies++
		}
	}
	if got := replies; got != maxBad {
		t.Errorf("replies before the close: got %d, want %d", got, maxBad)
	}
}

func TestBinaryFrameCloses1008(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	if err := al.conn.Write(context.Background(), websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if code := al.closed(5 * time.Second); code != websocket.StatusPolicyViolation {
		t.Errorf("close: got %d, want 1008", code)
	}
}

// TestProtocolErrorCloses1002: a frame that breaks RFC 6455 (here an
// unknown opcode) fails the connection with 1002, and the frames after it
// are not read.
func TestProtocolErrorCloses1002(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	ctx := context.Background()
	if err := al.conn.Write(ctx, websocket.MessageType(3), []byte("?")); err != nil {
		t.Fatal(err)
	}
	al.conn.Write(ctx, websocket.MessageText, []byte(`{"id":"after","op":"settings"}`))
	if code := al.closed(5 * time.Second); code != websocket.StatusProtocolError {
		t.Errorf("close: got %d, want 1002", code)
	}
	for _, m := range al.all() {
		if m.Type == typeReply {
			t.Errorf("the request after the bad frame was answered: %s", m.raw)
		}
	}
	eventually(t, 6*time.Second, func() bool { return e.hub.Connections() == 0 }, "still registered")
}

// TestClientPingAndClose: the hub answers a client's pings with pongs, and
// a client's close frame with a close frame of the same code; the client's
// Close, which waits for that answer, completes.
func TestClientPingAndClose(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		if err := al.conn.Ping(ctx); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
	}
	if err := al.conn.Close(4000, "tab closed"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if code := al.closed(time.Second); code != 4000 {
		t.Errorf("the hub's close frame: got code %d, want 4000 echoed", code)
	}
	eventually(t, 2*time.Second, func() bool { return e.hub.Connections() == 0 }, "still registered")
}

// TestClientFragmentedRequest: a request sent in several frames is one
// request.
func TestClientFragmentedRequest(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	w, err := al.conn.Writer(context.Background(), websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{`{"id":"frag",`, `"op":`, `"settings"}`} {
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, func() bool {
		for _, m := range al.all() {
			if m.Type == typeReply && strings.Contains(string(m.raw), `"frag"`) {
				return true
			}
		}
		return false
	}, "no reply to the fragmented request")
}

// The default request limits, as docs/protocol.md states them.
const (
	reqBurst     = 2 * DefaultRequestRate // per connection, at once
	agentReqRate = 2 * DefaultRequestRate // per agent, a second
)

// TestRequestRateIsConfigurable: Config.RequestRate sets the per-connection
// budget (a burst of twice the rate), and a negative rate turns the limits
// off.
func TestRequestRateIsConfigurable(t *testing.T) {
	for _, tt := range []struct {
		name    string
		rate    float64
		send    int
		limited bool
	}{
		{"a low rate refuses sooner", 5, 40, true},
		{"a negative rate refuses nothing", -1, 3 * reqBurst, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.RequestRate = tt.rate })
			e.workspace("acme", queues.SettingsPatch{})
			al := e.connect("acme", "al")
			for i := range tt.send {
				al.send(fmt.Sprintf(`{"id":%d,"op":"ping"}`, i))
			}
			ok, limited := 0, 0
			eventually(t, 10*time.Second, func() bool {
				ok, limited = 0, 0
				for _, m := range al.all() {
					switch {
					case m.Type != typeReply:
					case m.OK:
						ok++
					case m.Error.Code == codeRateLimited:
						limited++
					}
				}
				return ok+limited == tt.send
			}, "not every request was answered")
			if tt.limited && (limited == 0 || ok > 2*int(tt.rate)+int(tt.rate)) {
				t.Errorf("rate %v: got %d answered, %d rate_limited of %d at once", tt.rate, ok, limited, tt.send)
			}
			if !tt.limited && limited != 0 {
				t.Errorf("limits off: got %d rate_limited of %d", limited, tt.send)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	n := reqBurst + maxRefused + 20
	var frames []string
	for i := range n {
		frames = append(frames, fmt.Sprintf(`{"id":%d,"op":"activity"}`, i))
	}
	for _, f := range frames {
		if err := al.conn.Write(context.Background(), websocket.MessageText, []byte(f)); err != nil {
			break // closed under us: fine
		}
	}
	code := al.closed(5 * time.Second)
	limited := 0
	for _, m := range al.all() {
		if m.Type == typeReply && !m.OK && m.Error.Code == codeRateLimited {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("no rate_limited replies to %d requests at once", n)
	}
	if code != CloseRateLimited {
		t.Errorf("close: got %d, want 4029", code)
	}
	if e.obs.rejections(RejectRateLimited) != limited {
		t.Errorf("rate_limited counted %d times, replied %d", e.obs.rejections(RejectRateLimited), limited)
	}
}

func TestLogoutClosesEveryTab(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	al := e.connect("acme", "al")
	tab1 := e.connect("acme", "bea")
	tab2 := e.connect("acme", "bea")
	al.waitEvent("bea online", isPresence("bea", queues.StatusOnline))

	r := tab1.req("logout", nil)
	if !r.OK {
		t.Fatalf("logout: got %s", r.raw)
	}
	for _, c := range []*client{tab1, tab2} {
		if code := c.closed(5 * time.Second); code != CloseLoggedOut {
			t.Errorf("close: got %d, want 4001", code)
		}
	}
	ev := al.waitEvent("bea offline", isPresence("bea", queues.StatusOffline))
	if ev.Presence.Reason != "logout" {
		t.Errorf("reason: got %s, want logout", ev.Presence.Reason)
	}
}

func TestForceOffline(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	admin := e.connect("acme", "admin1")
	bea := e.connect("acme", "bea")
	admin.waitEvent("bea online", isPresence("bea", queues.StatusOnline))
	admin.fails("force_offline", map[string]any{"agent": "nobody"}, codeNotFound)
	admin.ok("force_offline", map[string]any{"agent": "bea"}, nil)
	if code := bea.closed(5 * time.Second); code != CloseLoggedOut {
		t.Errorf("close: got %d, want 4001", code)
	}
	admin.waitEvent("bea offline", isPresence("bea", queues.StatusOffline))
	admin.ok("settings", nil, nil) // the admin's own socket is untouched
}

func TestTokenExpiryCloses4002(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	// JWT exp has whole seconds: the token ends within 1 to 2 s.
	al := e.dial(token(t, "acme", "al", queues.RoleAgent, 2*time.Second))
	al.hello()
	if code := al.closed(4 * time.Second); code != CloseTokenExpired {
		t.Errorf("close: got %d, want 4002", code)
	}
}

// panicky is a Backend with a bug in History.
type panicky struct{ Backend }

func (panicky) History(string, string) ([]queues.AuditEntry, error) { panic("history is broken") }

func TestPanickingRequestClosesOnlyItsSocket(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backend = panicky{c.Backend} })
	e.workspace("acme", queues.SettingsPatch{})
	e.inbound("acme", "c1", "email")
	al := e.connect("acme", "al")
	bea := e.connect("acme", "bea")
	al.send(`{"id":1,"op":"history","conv":"c1"}`)
	if code := al.closed(5 * time.Second); code != websocket.StatusInternalError {
		t.Errorf("close: got %d, want 1011", code)
	}
	bea.ok("settings", nil, nil)
	e.connect("acme", "al").ok("page", map[string]any{"queue": "new"}, nil)
}

// TestWriteTimeoutCountsAsSlowConsumer: a client that stops reading while
// its queue still has room is caught by the write deadline instead; it is
// counted and logged as a slow consumer, not closed without a trace.
func TestWriteTimeoutCountsAsSlowConsumer(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueue = 1 << 20; c.WriteTimeout = 300 * time.Millisecond })
	e.workspace("acme", queues.SettingsPatch{})
	stalledClient(t, e, "acme", "bea")
	// Until a write cannot finish in time (the queue has room to spare).
	publishUntilSlow(t, e, "acme", e.store.Head("acme")+1000)
	eventually(t, 5*time.Second, func() bool { return e.hub.Connections() == 0 },
		"the stalled connection is still open")
}

// TestRateLimitIsPerAgentToo: an agent's sockets share one budget, so
// opening more of them buys no more requests than the agent's bucket holds.
func TestRateLimitIsPerAgentToo(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	const tabs = 4 // 4 × reqBurst per-connection tokens, more than the agent's 2 × agentReqRate
	var socks []*client
	for range tabs {
		socks = append(socks, e.connect("acme", "al"))
	}
	for i, s := range socks {
		for j := range reqBurst {
			if err := s.conn.Write(context.Background(), websocket.MessageText,
				fmt.Appendf(nil, `{"id":%d,"op":"activity"}`, i*reqBurst+j)); err != nil {
				t.Fatalf("tab %d: %v", i, err)
			}
		}
	}
	ok, limited := 0, 0
	eventually(t, 10*time.Second, func() bool {
		ok, limited = 0, 0
		for _, s := range socks {
			for _, m := range s.all() {
				if m.Type != typeReply {
					continue
				}
				if m.OK {
					ok++
				} else if m.Error.Code == codeRateLimited {
					limited++
				}
			}
		}
		return ok+limited == tabs*reqBurst
	}, "not every request was answered")
	// The agent's bucket holds 2 × agentReqRate, and refills at
	// agentReqRate a second while the requests arrive.
	if maxOK := 2*agentReqRate + agentReqRate; ok > maxOK {
		t.Errorf("got %d requests through %d sockets of one agent, want at most %d", ok, tabs, maxOK)
	}
	if limited == 0 {
		t.Errorf("got no rate_limited reply to %d requests of one agent", tabs*reqBurst)
	}
	// Another agent is not affected.
	bea := e.connect("acme", "bea")
	bea.ok("activity", nil, nil)
}

// stalledClient connects an agent that reads its hello and then nothing
// more; the socket is closed when the test ends.
func stalledClient(t *testing.T, e *env, ws, agent string) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.wsURL(token(t, ws, agent, queues.RoleAgent, time.Hour)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	c.SetReadLimit(-1)
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatalf("hello: %v", err)
	}
	return c
}

// publishUntilSlow publishes 64 KiB events from seq on, a few at a time,
// until the hub counts a slow consumer, and returns how many it published.
func publishUntilSlow(t *testing.T, e *env, ws string, seq uint64) int {
	t.Helper()
	published := 0
	eventually(t, 20*time.Second, func() bool {
		e.hub.Publish(ws, bigEvents(seq+uint64(published), 4, 64<<10))
		published += 4
		return e.obs.slow.Load() > 0
	}, "no slow consumer after %d events of 64 KiB", published)
	return published
}

// TestStalledReaderGetsEverythingWhenItReadsAgain: events published while
// a client does not read fill its socket, so writes go out in part and the
// rest waits for a writer goroutine; when the client reads again, every
// event arrives whole and in order. Sizes vary so that frames are cut at
// every kind of place, packed frames included.
func TestStalledReaderGetsEverythingWhenItReadsAgain(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SendQueue = 1 << 20 })
	e.workspace("acme", queues.SettingsPatch{})
	stalled := stalledClient(t, e, "acme", "bea")

	// About 24 MiB, more than loopback's socket buffers hold.
	seq := e.store.Head("acme") + 1000
	sizes := []int{70 << 10, 100, 3000, 40 << 10, 10, 130 << 10, 500}
	var want []uint64
	for len(want) < 400 {
		for _, size := range sizes {
			s := seq + uint64(len(want))
			e.hub.Publish("acme", bigEvents(s, 1, size))
			want = append(want, s)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got []uint64
	for len(got) < len(want) {
		_, b, err := stalled.Read(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(got), len(want), err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			var ev eventMsg
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("after %d events: a message that is not JSON (%d bytes): %v", len(got), len(line), err)
			}
			if ev.Type == typeEvent && ev.Seq >= seq {
				got = append(got, ev.Seq)
			}
		}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %d events out of order or with gaps", len(got))
	}
	if n := e.obs.slow.Load(); n != 0 {
		t.Errorf("got %d slow consumers, want 0", n)
	}
}

// TestRequestDeadlinesAreSharedAndBounded: requests starting within a
// step share one context, and every request gets at least reqTimeout and
// at most reqTimeout+deadlineStep; the contexts end with the hub.
func TestRequestDeadlinesAreSharedAndBounded(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	d := requestDeadlines{parent: parent}
	t0 := time.Now()
	first := d.get(t0)
	if d.get(t0.Add(deadlineStep/2)) != first {
		t.Error("two requests half a step apart got different contexts")
	}
	var got []context.Context
	for i := range 40 {
		now := t0.Add(time.Duration(i) * deadlineStep / 7)
		ctx := d.get(now)
		dl, ok := ctx.Deadline()
		if left := dl.Sub(now); !ok || left < reqTimeout || left > reqTimeout+deadlineStep {
			t.Fatalf("request at +%v: %v left, want %v to %v", now.Sub(t0), left, reqTimeout, reqTimeout+deadlineStep)
		}
		if len(got) == 0 || got[len(got)-1] != ctx {
			got = append(got, ctx)
		}
	}
	// 40 requests over 40/7 steps: one context per step or so, not one each.
	if len(got) > 8 {
		t.Errorf("%d contexts for 40 requests over %v, want one per step", len(got), 40*deadlineStep/7)
	}
	stop()
	for _, ctx := range got {
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			t.Fatal("a request context outlived the hub")
		}
	}
}

// unreadable is a Backend whose workspace snapshot cannot be read, so
// every hello fails.
type unreadable struct{ Backend }

func (unreadable) Head(string) uint64 { return 0 }
func (unreadable) Agent(string, string) (queues.Agent, error) {
	return queues.Agent{}, errors.New("the disk is gone")
}

// TestFailedHelloStillAnswersTheHandshake: when hello cannot be built, the
// close frame is the connection's first frame, and it still goes out
// behind a complete 101 (the hub holds the 101 back for the first write).
func TestFailedHelloStillAnswersTheHandshake(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Backend = unreadable{c.Backend} })
	e.workspace("acme", queues.SettingsPatch{})
	c := e.dial(token(t, "acme", "al", queues.RoleAgent, time.Hour)) // fails the test if the handshake does
	if code := c.closed(5 * time.Second); code != websocket.StatusInternalError {
		t.Errorf("close: got %d, want 1011", code)
	}
	if msgs := c.all(); len(msgs) != 0 {
		t.Errorf("got %d messages before the close, want none", len(msgs))
	}
}

// Changes sent back to back, on several connections at once, each get
// their own reply, whole: a change's reply is built in a pooled buffer,
// and one returned to the pool while still queued would come out as
// another reply's bytes.
func TestBackToBackChangesGetTheirOwnReplies(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.RequestRate = -1 })
	const agents, convs, n = 4, 4, 200 // per agent
	type want struct {
		conv, owner string
		version     uint64
	}
	clients := make([]*client, agents)
	versions := make([][]uint64, agents)
	wants := make([]map[string]want, agents)
	for a := range agents {
		versions[a] = make([]uint64, convs)
		for k := range convs {
			versions[a][k] = e.inbound("acme", fmt.Sprintf("c%d-%d", a, k), "email").Version
		}
		clients[a] = e.connect("acme", fmt.Sprintf("a%d", a))
		clients[a].hello()
		wants[a] = map[string]want{}
	}
	for i := 1; i <= n; i++ {
		for a, cl := range clients {
			k := i % convs
			conv := fmt.Sprintf("c%d-%d", a, k)
			v := versions[a][k]
			body := fmt.Sprintf(`{"id":%d,"op":"assign","conv":%q,"agent":"a%d","version":%d}`, i, conv, a, v)
			owner := fmt.Sprintf("a%d", a)
			if v%2 == 0 { // inbound left each at version 1, unowned
				body = fmt.Sprintf(`{"id":%d,"op":"unassign","conv":%q,"version":%d}`, i, conv, v)
				owner = ""
			}
			cl.send(body)
			versions[a][k]++
			wants[a][fmt.Sprint(i)] = want{conv, owner, v + 1}
		}
	}
	for a, cl := range clients {
		eventually(t, 10*time.Second, func() bool {
			got := 0
			for _, m := range cl.all() {
				if m.Type == typeReply {
					got++
				}
			}
			return got >= n
		}, "agent %d: not every reply arrived", a)
		seen := map[string]bool{}
		for _, m := range cl.all() {
			if m.Type != typeReply {
				continue
			}
			id := string(m.ID)
			w, ok := wants[a][id]
			if !ok || seen[id] {
				t.Fatalf("agent %d: unexpected or repeated reply %s", a, m.raw)
			}
			seen[id] = true
			var r struct {
				Conv queues.Conversation `json:"conv"`
			}
			if !m.OK || json.Unmarshal(m.Result, &r) != nil || r.Conv.ID != w.conv ||
				r.Conv.Owner != w.owner || r.Conv.Version != w.version {
				t.Errorf("agent %d, reply %s: got %s, want %s owned by %q at version %d", a, id, m.raw, w.conv, w.owner, w.version)
			}
		}
	}
}

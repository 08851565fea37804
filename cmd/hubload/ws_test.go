package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeHub is a loopback WebSocket server that speaks the documented
// protocol's framing: a hello, a reply to subscribe, then events packed
// several to a frame.
func fakeHub(t *testing.T, frames []string) (*httptest.Server, <-chan string) {
	t.Helper()
	auth := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth <- r.Header.Get("Authorization")
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"presencehub.v1"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"hello","v":1,"seq":7,"agents":[],"missed":[]}`))
		_, req, err := c.Read(ctx)
		if err != nil || !strings.Contains(string(req), `"op":"subscribe"`) {
			return
		}
		// An event before the reply, as when an agent connects meanwhile.
		c.Write(ctx, websocket.MessageText, []byte(`{"type":"event","seq":8,"kind":"presence","presence":{"agent":"x","from":"offline","to":"online"}}`+"\n"+
			`{"type":"reply","id":1,"ok":true,"result":{"view":"load","seq":8,"items":[],"counts":{}}}`))
		for _, f := range frames {
			c.Write(ctx, websocket.MessageText, []byte(f))
		}
		c.Close(websocket.StatusNormalClosure, "")
	}))
	t.Cleanup(srv.Close)
	return srv, auth
}

func testEnv(t *testing.T, base string) *env {
	t.Helper()
	cfg := &config{scenario: "fanout", url: base, secret: "0123456789abcdef0123", setupTimeout: 5 * time.Second,
		perIP: 1, srcIPs: 2, concurrency: 4}
	b, ws, err := parseTarget(base)
	if err != nil {
		t.Fatal(err)
	}
	return &env{cfg: cfg, base: b, wsURL: ws, mint: newMinter(cfg.secret),
		wsHTTP: newWSClient(newSrcPool(1, 2)), epoch: time.Now(), log: io.Discard}
}

func TestConnectSubscribeAndReadBatchedFrames(t *testing.T) {
	srv, auth := fakeHub(t, []string{
		`{"type":"event","seq":9,"kind":"conversation","conv":{"id":"c1","version":2}}` + "\n" +
			`{"type":"event","seq":10,"kind":"conversation","conv":{"id":"c1","version":3}}`,
		`{"type":"event","seq":11,"kind":"settings","settings":{}}`,
	})
	e := testEnv(t, srv.URL)
	ctx := context.Background()
	c, seq, err := e.dialAgent(ctx, "w1", "a1", "agent")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if seq != 7 {
		t.Errorf("hello seq: got %d, want 7", seq)
	}
	if a := <-auth; !strings.HasPrefix(a, "Bearer ") {
		t.Errorf("Authorization: got %q, want a bearer token", a)
	}
	var mu sync.Mutex // guards got
	var got []string
	note := func(m *message) {
		mu.Lock()
		got = append(got, string(m.Kind)+":"+string(m.ConvID))
		mu.Unlock()
	}
	if err := subscribe(ctx, c, note); err != nil {
		t.Fatal(err)
	}
	err = readLoop(c, e.epoch, true, func(m *message, _ time.Duration) { note(m) }, func(err error) { t.Errorf("bad frame: %v", err) })
	if code := closeCode(err); code != int(websocket.StatusNormalClosure) {
		t.Errorf("readLoop ended with %v, want a normal closure", err)
	}
	want := "presence:|conversation:c1|conversation:c1|settings:"
	if strings.Join(got, "|") != want {
		t.Errorf("got %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestDialAgentRefusesAFirstMessageThatIsNotHello(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"event","seq":1}`))
		c.Read(r.Context()) // until the client goes
	}))
	defer srv.Close()
	e := testEnv(t, srv.URL)
	if _, _, err := e.dialAgent(context.Background(), "w1", "a1", "agent"); err == nil || !strings.Contains(err.Error(), "want hello") {
		t.Errorf("got %v, want an error about hello", err)
	}
}

// A refused handshake reports the hub's status, and the connection is
// closed (the server sees it go).
func TestDialAgentReportsARefusedHandshake(t *testing.T) {
	gone := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, `{"error":{"code":"unauthorized","message":"token expired"}}`+"\n")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateClosed {
			close(gone)
		}
	}
	srv.Start()
	defer srv.Close()
	e := testEnv(t, srv.URL)
	_, _, err := e.dialAgent(context.Background(), "w1", "a1", "agent")
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Fatalf("got %v, want HTTP 401", err)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Error("the refused connection was not closed")
	}
}

// A hub that accepts the connection and never answers the handshake is
// given up on when the setup timeout passes.
func TestDialAgentGivesUpOnASilentHub(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() { // ends when the listener closes
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	e := testEnv(t, "http://"+ln.Addr().String())
	e.cfg.setupTimeout = 200 * time.Millisecond
	dialed := make(chan error, 1)
	go func() { // ends when dialAgent returns
		_, _, err := e.dialAgent(context.Background(), "w1", "a1", "agent")
		dialed <- err
	}()
	select {
	case err := <-dialed:
		if err == nil {
			t.Fatal("dial succeeded against a hub that never answered")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still dialing 5 s after a 200ms setup timeout")
	}
	select {
	case c := <-accepted:
		// The tool closed its side: the hub's end reads EOF.
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.Copy(io.Discard, c); err != nil {
			t.Errorf("the abandoned connection was not closed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the listener never saw the connection")
	}
}

// Without parse, readLoop counts every message of a packed frame, hands
// no fields, and still reports a line that is not an object.
func TestReadLoopCountsWithoutParsing(t *testing.T) {
	srv, _ := fakeHub(t, []string{`{"type":"event","seq":9}` + "\n" + `{"type":"event","seq":10}`, `not json`, "\v"})
	e := testEnv(t, srv.URL)
	ctx := context.Background()
	c, _, err := e.dialAgent(ctx, "w1", "a1", "agent")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := subscribe(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	var counted, parsed, bad int
	readLoop(c, e.epoch, false, func(m *message, _ time.Duration) {
		counted++
		if m != nil {
			parsed++
		}
	}, func(error) { bad++ })
	if counted != 2 || parsed != 0 || bad != 2 {
		t.Errorf("counted %d, parsed %d, bad %d; want 2, 0 and 2", counted, parsed, bad)
	}
}

// connectFleet's workers open every member once, more members than
// workers, and a member the hub refuses once is retried.
func TestConnectFleetOpensEveryMemberOnce(t *testing.T) {
	var mu sync.Mutex // guards seen and refused
	seen := map[string]int{}
	refused := false
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("Authorization")
		mu.Lock()
		if !refused {
			refused = true
			mu.Unlock()
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		seen[tok]++
		mu.Unlock()
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"presencehub.v1"}})
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"hello","v":1,"seq":1,"agents":[],"missed":[]}`))
		<-release
	}))
	defer srv.Close()
	defer close(release)
	e := testEnv(t, srv.URL)
	const n = 23 // workers: testEnv's concurrency, 4
	f, err := e.connectFleet(context.Background(), n, func(i int) (int, string) { return i % 3, "a" + strconv.Itoa(i) },
		false, false, func(int, *message, time.Duration) {})
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	for i, m := range f.members {
		if m.c == nil {
			t.Errorf("member %d is not connected", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Errorf("the hub saw %d distinct agents, want %d", len(seen), n)
	}
	for tok, k := range seen {
		if k != 1 {
			t.Errorf("token %.20s… connected %d times", tok, k)
		}
	}
	if f.retries.Load() != 1 {
		t.Errorf("%d retries, want the refused one", f.retries.Load())
	}
}

// A fleet whose context ends before it is connected is an error, not a
// fleet of members that never connected.
func TestConnectFleetCancelledIsAnError(t *testing.T) {
	e := testEnv(t, "http://127.0.0.1:1")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err := e.connectFleet(ctx, 10, func(i int) (int, string) { return 0, "a" + strconv.Itoa(i) },
		false, false, func(int, *message, time.Duration) {})
	if err == nil {
		f.close()
		t.Fatal("a cancelled connect returned a fleet")
	}
}

// A connection the hub ends while the fleet is up is counted by how it
// ended, and logged with its error: a run's report must say why.
func TestConnectFleetCountsAndLogsConnectionsTheHubEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"presencehub.v1"}})
		if err != nil {
			return
		}
		c.Write(r.Context(), websocket.MessageText, []byte(`{"type":"hello","v":1,"seq":1,"agents":[],"missed":[]}`))
		c.CloseNow() // no close frame: the TCP connection just ends
	}))
	defer srv.Close()
	e := testEnv(t, srv.URL)
	// A file takes writes from the fleet's reader goroutines at once.
	log, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	e.log = log
	f, err := e.connectFleet(context.Background(), 2, func(i int) (int, string) { return 0, "a" + strconv.Itoa(i) },
		false, false, func(int, *message, time.Duration) {})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := f.droppedCount(); got["eof_or_error"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			got, _ := f.droppedCount()
			t.Fatalf("dropped %v, want eof_or_error: 2", got)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.close()
	b, err := os.ReadFile(log.Name())
	if err != nil {
		t.Fatal(err)
	}
	out := string(b)
	for _, who := range []string{"/a0: connection ended before the run did: ", "/a1: connection ended before the run did: "} {
		if !strings.Contains(out, who) {
			t.Errorf("the log has no line with %q:\n%s", who, out)
		}
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const testSecret = "test-secret-0123456789abcdef"

func envOf(m map[string]string) lookupEnv {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestParseServeFlagsEnvDefaults(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    func(serveConfig) bool
		wantErr string
	}{
		{
			name: "defaults with secret from env",
			env:  map[string]string{"PRESENCEHUB_SECRET": testSecret},
			want: func(c serveConfig) bool {
				return c.Addr == "127.0.0.1:8080" && c.Data == "./data" && c.Durable && !c.Demo &&
					c.PublicURL == "http://127.0.0.1:8080"
			},
		},
		{
			name: "flag wins over env",
			args: []string{"-addr", "127.0.0.1:9000", "-secret", testSecret},
			env:  map[string]string{"PRESENCEHUB_ADDR": "127.0.0.1:7000", "PRESENCEHUB_DURABLE": "false"},
			want: func(c serveConfig) bool { return c.Addr == "127.0.0.1:9000" && !c.Durable },
		},
		{
			name: "origins and log level",
			args: []string{"-secret", testSecret, "-origins", "a.example.com, *.b.example.com", "-log-level", "debug"},
			want: func(c serveConfig) bool {
				return len(c.Origins) == 2 && c.Origins[1] == "*.b.example.com" && c.LogLevel.String() == "DEBUG"
			},
		},
		{name: "no secret", wantErr: "secret"},
		{name: "short secret", args: []string{"-secret", "short"}, wantErr: "at least 16"},
		{name: "bad env bool", env: map[string]string{"PRESENCEHUB_SECRET": testSecret, "PRESENCEHUB_DURABLE": "maybe"}, wantErr: "PRESENCEHUB_DURABLE"},
		{name: "bad log level", args: []string{"-secret", testSecret, "-log-level", "loud"}, wantErr: "log-level"},
		{name: "api rate", args: []string{"-secret", testSecret, "-api-rate", "200"}, want: func(c serveConfig) bool { return c.APIRate == 200 }},
		{name: "api rate zero", args: []string{"-secret", testSecret, "-api-rate", "0"}, wantErr: "api-rate"},
		{name: "ws rate", args: []string{"-secret", testSecret, "-ws-rate", "-1"}, want: func(c serveConfig) bool { return c.WSRate == -1 }},
		{name: "ws rate zero", args: []string{"-secret", testSecret, "-ws-rate", "0"}, wantErr: "ws-rate"},
		{name: "stray argument", args: []string{"-secret", testSecret, "extra"}, wantErr: "unexpected argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseServe(tt.args, envOf(tt.env), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			if !tt.want(c) {
				t.Fatalf("got config %+v", c)
			}
		})
	}
}

func TestTokenCommandMintsVerifiableToken(t *testing.T) {
	var out bytes.Buffer
	err := token([]string{"-ws", "acme", "-sub", "bea", "-name", "Bea Chen", "-role", "admin", "-ttl", "1h",
		"-link", "http://127.0.0.1:8080"}, envOf(map[string]string{"PRESENCEHUB_SECRET": testSecret}), &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want token and link:\n%s", len(lines), out.String())
	}
	v, err := hub.NewVerifier([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.Verify(lines[0])
	if err != nil {
		t.Fatalf("minted token does not verify: %v", err)
	}
	if id.Workspace != "acme" || id.Agent != "bea" || id.Name != "Bea Chen" || id.Role != queues.RoleAdmin {
		t.Fatalf("got identity %+v", id)
	}
	if want := "http://127.0.0.1:8080/#token=" + lines[0]; lines[1] != want {
		t.Fatalf("got link %q, want %q", lines[1], want)
	}

	for _, args := range [][]string{
		{"-ws", "acme"}, // no sub
		{"-ws", "acme", "-sub", "x", "-role", "god"}, // bad role
		{"-ws", "acme", "-sub", "x", "-ttl", "-1h"},  // bad ttl
		{"-ws", "acme/x", "-sub", "x"},               // bad id
	} {
		if err := token(args, envOf(map[string]string{"PRESENCEHUB_SECRET": testSecret}), io.Discard, io.Discard); err == nil {
			t.Errorf("token %v: got no error, want one", args)
		}
	}
}

func TestRunUnknownCommand(t *testing.T) {
	if err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard); err == nil {
		t.Fatal("got no error for an unknown command")
	}
	if err := run(context.Background(), nil, io.Discard, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v with no command, want flag.ErrHelp", err)
	}
}

// lockedBuffer collects serve's stdout, which serve writes from its own
// goroutine while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServe runs `serve` in-process on a free loopback port and returns its
// base URL and a stop function that waits for a clean shutdown.
func startServe(t *testing.T, dir string, demo bool) (base string, out *lockedBuffer, stop func()) {
	t.Helper()
	cfg, err := parseServe([]string{"-addr", "127.0.0.1:0", "-data", dir, "-secret", testSecret,
		"-durable=false", "-log-level", "error", "-drain", "5s"}, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Demo = demo
	ctx, cancel := context.WithCancel(context.Background())
	out = &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, out, io.Discard) }() // ends when ctx is cancelled
	re := regexp.MustCompile(`listening on (http://\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			base = m[1]
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve returned before listening: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatal("serve did not start listening within 10s")
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("serve did not shut down within 15s")
			}
		})
	}
	t.Cleanup(stop)
	return base, out, stop
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeDemoEndToEnd starts the server the way `make run` does, follows a
// printed console link's token onto the WebSocket, checks every endpoint,
// and restarts on the same data directory.
func TestServeDemoEndToEnd(t *testing.T) {
	dir := t.TempDir()
	base, out, stop := startServe(t, dir, true)

	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/"} {
		if code, body := get(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s: got %d %q, want 200", path, code, body)
		}
	}
	if _, body := get(t, base+"/metrics"); !strings.Contains(body, "presencehub_conversations") {
		t.Errorf("metrics lack presencehub_conversations:\n%.500s", body)
	}

	// The printed links carry working tokens for Al, Bea and Ann.
	links := regexp.MustCompile(`#token=(\S+)`).FindAllStringSubmatch(out.String(), -1)
	if len(links) != 3 {
		t.Fatalf("got %d console links, want 3:\n%s", len(links), out.String())
	}
	hello := dialHello(t, base, links[0][1])
	if hello.Me.ID != "al" || len(hello.Agents) != len(demoAgents) {
		t.Fatalf("got hello for %q with %d agents, want al with %d", hello.Me.ID, len(hello.Agents), len(demoAgents))
	}

	// The demo has something in every queue.
	for _, q := range []string{"new", "pending", "resolved"} {
		code, body := apiGet(t, base, links[2][1], "/api/v1/conversations?queue="+q)
		if code != http.StatusOK || !strings.Contains(body, `"id"`) {
			t.Errorf("queue %s: got %d %.200s, want a non-empty page", q, code, body)
		}
	}
	stop()

	// A restart keeps the data and does not seed the demo twice.
	base, _, stop = startServe(t, dir, true)
	code, body := apiGet(t, base, links[2][1], "/api/v1/conversations?queue=new&limit=500")
	if code != http.StatusOK {
		t.Fatalf("after restart: got %d %s", code, body)
	}
	var page queues.Page
	if err := json.Unmarshal([]byte(body), &page); err != nil {
		t.Fatal(err)
	}
	wantNew := 0
	for _, c := range demoConvs {
		if c.queue == queues.QueueNew {
			wantNew++
		}
	}
	if page.Counts.Total != wantNew {
		t.Fatalf("after restart: got %d new conversations, want %d", page.Counts.Total, wantNew)
	}
	stop()
}

type helloMsg struct {
	Type   string         `json:"type"`
	Seq    uint64         `json:"seq"`
	Me     queues.Agent   `json:"me"`
	Agents []queues.Agent `json:"agents"`
}

func dialHello(t *testing.T, base, token string) helloMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws?access_token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(websocket.StatusNormalClosure, "")
	_, data, err := c.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var h helloMsg
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	if !sc.Scan() {
		t.Fatal("empty first frame")
	}
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Type != "hello" {
		t.Fatalf("first message %.200s: %v", sc.Bytes(), err)
	}
	return h
}

func apiGet(t *testing.T, base, token, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func apiDo(t *testing.T, method, base, token, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mint(t *testing.T, agent, name string, role queues.Role) string {
	t.Helper()
	tok, err := hub.Mint([]byte(testSecret), hub.Identity{Workspace: demoWorkspace, Agent: agent, Name: name, Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func conversation(t *testing.T, base, token, id string) queues.Conversation {
	t.Helper()
	code, body := apiGet(t, base, token, "/api/v1/conversations/"+id)
	if code != http.StatusOK {
		t.Fatalf("GET conversation %s: got %d %s", id, code, body)
	}
	var r struct {
		Conversation queues.Conversation `json:"conversation"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	return r.Conversation
}

func agentStatus(t *testing.T, base, token, id string) queues.Status {
	t.Helper()
	code, body := apiGet(t, base, token, "/api/v1/agents")
	if code != http.StatusOK {
		t.Fatalf("GET agents: got %d %s", code, body)
	}
	var r struct {
		Agents []queues.Agent `json:"agents"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatal(err)
	}
	for _, a := range r.Agents {
		if a.ID == id {
			return a.Status
		}
	}
	t.Fatalf("agent %s not listed", id)
	return ""
}

// TestRestartGivesOnlineAgentsAFreshGrace: Bea is online when the hub
// stops. After the restart she is still online (her console has the grace to
// reconnect, counted from start-up); when it passes without a reconnect she
// goes offline and, with Remove Ownership on, her New conversations are
// unowned while her Pending one keeps her.
func TestRestartGivesOnlineAgentsAFreshGrace(t *testing.T) {
	dir := t.TempDir()
	base, _, stop := startServe(t, dir, true)
	ann := mint(t, "ann", "Ann Admin", queues.RoleAdmin)
	bea := mint(t, "bea", "Bea Chen", queues.RoleAgent)

	if code, body := apiDo(t, http.MethodPatch, base, ann, "/api/v1/settings",
		`{"remove_ownership":true,"offline_grace":3}`); code != http.StatusOK {
		t.Fatalf("PATCH settings: got %d %s", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(base, "http", "ws", 1)+"/ws?access_token="+bea, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	eventually(t, 5*time.Second, "bea online", func() bool { return agentStatus(t, base, ann, "bea") == queues.StatusOnline })
	stop()
	c.CloseNow()

	base, _, stop = startServe(t, dir, false)
	defer stop()
	started := time.Now()
	if got := agentStatus(t, base, ann, "bea"); got != queues.StatusOnline {
		t.Fatalf("right after restart: got bea %s, want online (inside her fresh grace)", got)
	}
	eventually(t, 10*time.Second, "bea offline after the grace", func() bool {
		return agentStatus(t, base, ann, "bea") == queues.StatusOffline
	})
	if waited := time.Since(started); waited < 2*time.Second {
		t.Errorf("bea went offline %v after start-up, want about the 3 s grace", waited)
	}
	for _, id := range []string{"c2", "c6"} {
		if got := conversation(t, base, ann, id); got.Owner != "" || got.Queue != queues.QueueNew {
			t.Errorf("%s: got queue %s owner %q, want new and unowned", id, got.Queue, got.Owner)
		}
	}
	if got := conversation(t, base, ann, "c7"); got.Owner != "bea" {
		t.Errorf("c7 (pending): got owner %q, want bea", got.Owner)
	}
}

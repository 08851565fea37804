package hub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// startFront serves e's hub through a Front on a loopback port, closed
// when the test ends; served gets what Serve returned.
func startFront(t *testing.T, e *env, timeout time.Duration) (f *Front, served <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f = NewFront(e.hub, ln, "/ws", timeout)
	ch := make(chan error, 1)
	go func() { ch <- f.Serve() }() // ends when f is closed
	t.Cleanup(func() { f.Close() })
	return f, ch
}

// frontOf serves e's hub through a Front of its own, whose http.Server
// answers every request it gets with "net/http", the method, the path and
// the body, and counts them: what reaches it was handed on.
func frontOf(t *testing.T, e *env, timeout time.Duration) (addr string, handedOn *atomic.Int64) {
	t.Helper()
	f, served := startFront(t, e, timeout)
	handedOn = new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handedOn.Add(1)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "net/http %s %s %s", r.Method, r.URL.Path, body)
	})}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(f.Listener()) }() // ends with srv.Close
	t.Cleanup(func() {
		srv.Close() // closes the front too
		for _, err := range []error{<-served, <-done} {
			if !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return f.ln.Addr().String(), handedOn
}

// handshakeHead is a WebSocket handshake for /ws with tok, and extra
// header lines.
func handshakeHead(addr, tok string, extra ...string) string {
	h := "GET /ws?access_token=" + tok + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	for _, x := range extra {
		h += x + "\r\n"
	}
	return h + "\r\n"
}

// rawDial opens a TCP connection to addr, closed when the test ends, and
// gives it a deadline of wait for everything it reads and writes.
func rawDial(t *testing.T, addr string, wait time.Duration) net.Conn {
	t.Helper()
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.SetDeadline(time.Now().Add(wait))
	return s
}

// noneHandedOn fails the test if any request reached net/http.
func noneHandedOn(t *testing.T, handedOn *atomic.Int64) {
	t.Helper()
	if n := handedOn.Load(); n != 0 {
		t.Errorf("%d requests reached net/http, want none", n)
	}
}

// TestFrontAnswersHandshakesItself: a client's handshake is answered, and
// the socket served, without net/http seeing the request.
func TestFrontAnswersHandshakesItself(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, handedOn := frontOf(t, e, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", &websocket.DialOptions{
		HTTPHeader:   http.Header{"Authorization": {"Bearer " + token(t, "acme", "al", queues.RoleAgent, time.Hour)}},
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		t.Fatal(err)
	}
	c := startClient(t, conn)
	c.hello()
	c.send(`{"id":1,"op":"settings"}`)
	if r := c.reply("1"); !r.OK {
		t.Errorf("settings: %s", r.raw)
	}
	c.leave()
	noneHandedOn(t, handedOn)
}

// TestFrontHandsOnEverythingElse: any request that is not a WebSocket
// handshake of /ws with a head of at most frontHeadMax bytes reaches
// net/http whole, body included, and a keep-alive connection goes on
// serving requests there.
func TestFrontHandsOnEverythingElse(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, handedOn := frontOf(t, e, 10*time.Second)
	tok := token(t, "acme", "al", queues.RoleAgent, time.Hour)
	upgrade := strings.TrimPrefix(handshakeHead(addr, tok), "GET /ws?access_token="+tok+" HTTP/1.1\r\n")
	tests := []struct {
		name, request, want string
	}{
		{"another path", "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "net/http GET /healthz "},
		{"a longer path", "GET /wsx HTTP/1.1\r\n" + upgrade, "net/http GET /wsx "},
		{"a shorter request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", "net/http GET / "},
		{"a body", "POST /api/v1/inbound HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "net/http POST /api/v1/inbound hello"},
		{"no upgrade", "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", "net/http GET /ws "},
		{"another method", "PUT /ws HTTP/1.1\r\nContent-Length: 0\r\n" + upgrade, "net/http PUT /ws "},
		{"a big head", handshakeHead(addr, tok, "Cookie: c="+strings.Repeat("x", frontHeadMax)), "net/http GET /ws "},
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", "HTTP/1.1 400 Bad Request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := rawDial(t, addr, 5*time.Second)
			if _, err := io.WriteString(s, tt.request); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(s)
			if strings.HasPrefix(tt.want, "HTTP/") {
				line, _ := br.ReadString('\n')
				if !strings.HasPrefix(line, tt.want) {
					t.Fatalf("got %q, want %q", line, tt.want)
				}
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if string(body) != tt.want {
				t.Fatalf("got %q, want %q", body, tt.want)
			}
		})
	}
	if n := handedOn.Load(); n != int64(len(tests)-1) {
		t.Errorf("net/http saw %d requests, want %d", n, len(tests)-1)
	}

	// Two requests in one write, on one connection: both answered.
	s := rawDial(t, addr, 5*time.Second)
	io.WriteString(s, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	br := bufio.NewReader(s)
	for _, want := range []string{"net/http GET /a ", "net/http POST /b hi"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Errorf("got %q, want %q", body, want)
		}
	}
}

// TestFrontReadsAHeadInPieces: a handshake that arrives a few bytes at a
// time, split inside the request line and inside the final blank line,
// is answered like any other.
func TestFrontReadsAHeadInPieces(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, handedOn := frontOf(t, e, 10*time.Second)
	head := handshakeHead(addr, token(t, "acme", "al", queues.RoleAgent, time.Hour))
	s := rawDial(t, addr, 10*time.Second)
	s.(*net.TCPConn).SetNoDelay(true)
	for _, piece := range []string{head[:2], head[2:9], head[9 : len(head)-3], head[len(head)-3 : len(head)-1], head[len(head)-1:]} {
		if _, err := io.WriteString(s, piece); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(s)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	hello, err := readFrame(br)
	if err != nil || !strings.Contains(string(hello), `"type":"hello"`) {
		t.Fatalf("first frame %q, %v: want the hello", hello, err)
	}
	noneHandedOn(t, handedOn)
}

// TestFrontRefusalIsAWholeAnswer: a refused handshake gets a complete
// HTTP answer (status, length, JSON error) and the connection closes.
func TestFrontRefusalIsAWholeAnswer(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, _ := frontOf(t, e, 10*time.Second)
	s := rawDial(t, addr, 5*time.Second)
	io.WriteString(s, handshakeHead(addr, "not.a.jwt"))
	br := bufio.NewReader(s)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"code":"unauthorized"`) ||
		resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("got %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if !resp.Close {
		t.Errorf("the answer does not say the connection closes")
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after the answer: %v, want the connection closed", err)
	}
}

// TestFrontClosesAClientThatDoesNotFinishItsHead: a connection that sends
// nothing, or part of a head, is closed once the head timeout passes.
func TestFrontClosesAClientThatDoesNotFinishItsHead(t *testing.T) {
	e := newEnv(t)
	addr, handedOn := frontOf(t, e, 200*time.Millisecond)
	for _, sent := range []string{"", "GET /w", "GET /ws HTTP/1.1\r\nHost: x\r\n"} {
		s := rawDial(t, addr, 10*time.Second)
		io.WriteString(s, sent)
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		n, err := s.Read(make([]byte, 1))
		if n != 0 || err != io.EOF {
			t.Errorf("sent %q: read %d bytes, %v; want the connection closed", sent, n, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("sent %q: closed after %v", sent, d)
		}
		s.Close()
	}
	noneHandedOn(t, handedOn)
}

// TestFrontClose: Close ends Serve and the Listener's Accept, and the
// listening socket is closed.
func TestFrontClose(t *testing.T) {
	e := newEnv(t)
	f, served := startFront(t, e, time.Second)
	accepted := make(chan error, 1)
	go func() { _, err := f.Listener().Accept(); accepted <- err }() // ends with f.Close
	if err := f.Listener().Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan error{"Serve": served, "Accept": accepted} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s returned %v, want net.ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still running after Close", name)
		}
	}
	if c, err := net.DialTimeout("tcp", f.ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Error("the listening socket still accepts after Close")
	}
}

func TestRetryAccept(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{net.ErrClosed, false},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EINVAL)}, false},
	} {
		if got := retryAccept(tt.err); got != tt.want {
			t.Errorf("retryAccept(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// firstLine sends raw on a new connection to addr and returns the first
// line of the answer, or "closed" or "timeout".
func firstLine(t *testing.T, addr, raw string, wait time.Duration) string {
	t.Helper()
	s := rawDial(t, addr, wait)
	if _, err := io.WriteString(s, raw); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(s).ReadString('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "timeout"
		}
		return "closed"
	}
	return strings.TrimSpace(line)
}

// upgradeHeaders are a handshake's header lines, Host aside.
const upgradeHeaders = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

// TestFrontAnswersBareLineFeeds: a head whose lines end in a bare "\n",
// which net/http accepts, is answered at once, not left to time out.
func TestFrontAnswersBareLineFeeds(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, handedOn := frontOf(t, e, 10*time.Second)
	tok := token(t, "acme", "al", queues.RoleAgent, time.Hour)
	for _, raw := range []string{
		strings.ReplaceAll("GET /ws?access_token="+tok+" HTTP/1.1\r\nHost: x\r\n"+upgradeHeaders+"\r\n", "\r\n", "\n"),
		"GET /ws?access_token=" + tok + " HTTP/1.1\r\nHost: x\r\n" + upgradeHeaders + "\n",
	} {
		if got := firstLine(t, addr, raw, 2*time.Second); got != "HTTP/1.1 101 Switching Protocols" {
			t.Errorf("%q: got %q, want a 101", raw[len(raw)-12:], got)
		}
	}
	noneHandedOn(t, handedOn)
}

// TestFrontLeavesBadRequestsToNetHTTP: a handshake net/http's server
// would refuse before calling a handler gets net/http's refusal, not a
// socket.
func TestFrontLeavesBadRequestsToNetHTTP(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, _ := frontOf(t, e, 2*time.Second)
	line := "GET /ws?access_token=" + token(t, "acme", "al", queues.RoleAgent, time.Hour)
	for _, tc := range []struct{ name, raw, want string }{
		{"no Host", line + " HTTP/1.1\r\n" + upgradeHeaders + "\r\n", "HTTP/1.1 400"},
		{"a malformed Host", line + " HTTP/1.1\r\nHost: a b/c\r\n" + upgradeHeaders + "\r\n", "HTTP/1.1 400"},
		{"a bad header name", line + " HTTP/1.1\r\nHost: x\r\nX A: b\r\n" + upgradeHeaders + "\r\n", "HTTP/1.1 400"},
		{"HTTP/2.0", line + " HTTP/2.0\r\nHost: x\r\n" + upgradeHeaders + "\r\n", "HTTP/1.1 505"},
		{"Expect: foo", line + " HTTP/1.1\r\nHost: x\r\nExpect: foo\r\n" + upgradeHeaders + "\r\n", "HTTP/1.1 417"},
	} {
		if got := firstLine(t, addr, tc.raw, 2*time.Second); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: got %q, want %q as net/http answers", tc.name, got, tc.want)
		}
	}
}

// TestHandshakeHandedOnKeepsRawIO: a handshake that goes through net/http
// (a head over frontHeadMax, as a browser with many cookies sends) still
// gets the hub's non-blocking reads and inline writes: the connection
// net/http hijacks gives up its raw socket.
func TestHandshakeHandedOnKeepsRawIO(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	for _, cookie := range []string{"small", strings.Repeat("x", frontHeadMax)} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(e.srv.URL, "http")+"/ws", &websocket.DialOptions{
			HTTPHeader: http.Header{
				"Authorization": {"Bearer " + token(t, "acme", "al", queues.RoleAgent, time.Hour)},
				"Cookie":        {"c=" + cookie},
			},
			Subprotocols: []string{Subprotocol},
		})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c := startClient(t, conn)
		c.hello()
		for _, hc := range e.hub.reg.all() {
			if hc.rc == nil {
				t.Errorf("cookie of %d bytes: the hub's connection has no raw socket (it is a %T)", len(cookie), hc.raw)
			}
		}
		c.leave()
		eventually(t, 5*time.Second, func() bool { return len(e.hub.reg.all()) == 0 }, "connection not unregistered")
	}
}

// blockingConnect holds ConnectAgent until release is closed.
type blockingConnect struct {
	Backend
	entered chan struct{}
	release chan struct{}
}

func (b blockingConnect) ConnectAgent(ctx context.Context, ws string, a queues.Agent) (queues.Agent, bool, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return b.Backend.ConnectAgent(ctx, ws, a)
}

// TestFrontShutdownWaitsForHandshakes: as http.Server.Shutdown waits for
// its handlers, Front.Shutdown waits for a handshake the hub is still
// answering, so the server does not close the store under it.
func TestFrontShutdownWaitsForHandshakes(t *testing.T) {
	bc := blockingConnect{entered: make(chan struct{}), release: make(chan struct{})}
	e := newEnv(t, func(c *Config) { bc.Backend = c.Backend; c.Backend = bc })
	e.workspace("acme", queues.SettingsPatch{})
	f, served := startFront(t, e, 10*time.Second)
	addr := f.ln.Addr().String()
	s := rawDial(t, addr, 10*time.Second)
	io.WriteString(s, handshakeHead(addr, token(t, "acme", "al", queues.RoleAgent, time.Hour)))
	select {
	case <-bc.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the handshake never reached ConnectAgent")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- f.Shutdown(ctx) }() // ends when the handshake does, or with ctx
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a handshake was in the hub", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(bc.release)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v", err)
	}
}

// TestFrontCloseEndsHeadReads: as http.Server.Close does, closing the
// Front closes a connection still sending its head, at once, not when
// the head timeout passes.
func TestFrontCloseEndsHeadReads(t *testing.T) {
	e := newEnv(t)
	f, served := startFront(t, e, 10*time.Second)
	s := rawDial(t, f.ln.Addr().String(), 10*time.Second)
	io.WriteString(s, "GET /ws HTTP/1.1\r\n")
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := f.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v, want the head's reader ended", err)
	}
	<-served
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after Shutdown: %v, want the connection closed", err)
	}
}

// TestFront426SaysUpgrade: the 426 for a handshake without "Connection:
// Upgrade" names the protocol and lists "upgrade" in Connection, as RFC
// 9110 (7.8) asks of a sender of Upgrade.
func TestFront426SaysUpgrade(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	s := rawDial(t, e.srv.Listener.Addr().String(), 2*time.Second)
	io.WriteString(s, "GET /ws?access_token="+token(t, "acme", "al", queues.RoleAgent, time.Hour)+
		" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	// Read as sent: http.ReadResponse drops a Connection that says close.
	var head []string
	br := bufio.NewReader(s)
	for {
		line, err := br.ReadString('\n')
		if err != nil || line == "\r\n" {
			break
		}
		head = append(head, strings.TrimSpace(line))
	}
	if len(head) == 0 || !strings.HasPrefix(head[0], "HTTP/1.1 426 ") {
		t.Fatalf("got %q, want a 426", head)
	}
	for _, h := range head[1:] {
		if k, v, _ := strings.Cut(h, ":"); strings.EqualFold(k, "Connection") && strings.Contains(strings.ToLower(v), "upgrade") {
			return
		}
	}
	t.Errorf("a 426 without upgrade in Connection: %q", head)
}

// TestFrontHeadTimeoutIsNotRestarted: a head Front hands on keeps the
// deadline it had: net/http does not give it a second header timeout.
func TestFrontHeadTimeoutIsNotRestarted(t *testing.T) {
	e := newEnv(t)
	const timeout = 500 * time.Millisecond
	f, served := startFront(t, e, timeout)
	srv := &http.Server{Handler: e.hub, ReadHeaderTimeout: timeout}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(f.Listener()) }() // ends with srv.Close
	t.Cleanup(func() { srv.Close(); <-served; <-done })

	s := rawDial(t, f.ln.Addr().String(), 10*time.Second)
	start := time.Now()
	head := "GET /ws HTTP/1.1\r\nX-Slow: " + strings.Repeat("a", frontHeadMax)
	io.WriteString(s, head[:frontHeadMax-10])
	time.Sleep(timeout - 150*time.Millisecond)
	io.WriteString(s, head[frontHeadMax-10:]) // Front's buffer is full: handed on
	// A byte every 50 ms, until the hub closes the connection (at most 3 s).
	s.SetReadDeadline(time.Now().Add(3 * time.Second))
	closed := make(chan time.Duration, 1)
	go func() { // ends when the hub closes s, or at the deadline
		s.Read(make([]byte, 512))
		closed <- time.Since(start)
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case d := <-closed:
			if d > timeout+250*time.Millisecond {
				t.Errorf("a head that never ends was read for %v; the head timeout is %v", d.Round(time.Millisecond), timeout)
			}
			return
		case <-tick.C:
			io.WriteString(s, "a")
		}
	}
}

// TestFrontWithoutHeaderTimeout: with no header timeout (0, as for an
// http.Server), the front sets no deadline, and a request handed on keeps
// net/http's behaviour: its body may take as long as it takes.
func TestFrontWithoutHeaderTimeout(t *testing.T) {
	e := newEnv(t)
	addr, _ := frontOf(t, e, 0)
	if got := firstLine(t, addr, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 2*time.Second); got != "HTTP/1.1 200 OK" {
		t.Errorf("GET: got %q, want net/http's 200", got)
	}
	postLate(t, addr, 300*time.Millisecond)
}

// TestHandedOnBodyIsNotHeldToTheHeadDeadline: the head's deadline is for
// the head: a body that comes later is read as net/http reads it.
func TestHandedOnBodyIsNotHeldToTheHeadDeadline(t *testing.T) {
	e := newEnv(t)
	addr, _ := frontOf(t, e, 300*time.Millisecond)
	postLate(t, addr, 700*time.Millisecond) // past the head's deadline
}

// postLate sends a POST whose 5-byte body follows its head after wait, and
// checks that net/http read the whole body.
func postLate(t *testing.T, addr string, wait time.Duration) {
	t.Helper()
	s := rawDial(t, addr, wait+5*time.Second)
	io.WriteString(s, "POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
	time.Sleep(wait)
	io.WriteString(s, "hello")
	resp, err := http.ReadResponse(bufio.NewReader(s), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if got := string(body); got != "net/http POST /api/x hello" {
		t.Errorf("got %q, want the whole body read", got)
	}
}

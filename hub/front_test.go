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

// frontOf serves e's hub through a Front of its own, whose http.Server
// answers every request it gets with "net/http", the method, the path and
// the body, and counts them: what reaches it was handed on.
func frontOf(t *testing.T, e *env, timeout time.Duration) (addr string, handedOn *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFront(e.hub, ln, "/ws", timeout)
	handedOn = new(atomic.Int64)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handedOn.Add(1)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "net/http %s %s %s", r.Method, r.URL.Path, body)
	})}
	done := make(chan error, 2)
	go func() { done <- f.Serve() }()               // ends when srv.Close closes the front
	go func() { done <- srv.Serve(f.Listener()) }() // ends with srv.Close
	t.Cleanup(func() {
		srv.Close()
		for range 2 {
			if err := <-done; !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		}
	})
	return ln.Addr().String(), handedOn
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
	if n := handedOn.Load(); n != 0 {
		t.Errorf("%d requests reached net/http, want none", n)
	}
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
			s, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.SetDeadline(time.Now().Add(5 * time.Second))
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
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
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
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
	if n := handedOn.Load(); n != 0 {
		t.Errorf("%d requests reached net/http, want none", n)
	}
}

// TestFrontRefusalIsAWholeAnswer: a refused handshake gets a complete
// HTTP answer (status, length, JSON error) and the connection closes.
func TestFrontRefusalIsAWholeAnswer(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr, _ := frontOf(t, e, 10*time.Second)
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
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
		s, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
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
	if n := handedOn.Load(); n != 0 {
		t.Errorf("%d requests reached net/http, want none", n)
	}
}

// TestFrontClose: Close ends Serve and the Listener's Accept, and the
// listening socket is closed.
func TestFrontClose(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := NewFront(e.hub, ln, "/ws", time.Second)
	served := make(chan error, 1)
	go func() { served <- f.Serve() }() // ends with f.Close
	accepted := make(chan error, 1)
	go func() { _, err := f.Listener().Accept(); accepted <- err }() // ends with f.Close
	if err := f.Listener().Close(); err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]chan error{"Serve": served, "Accept": accepted} {
		select {
		case err := <-ch:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s returned %v, want net.ErrClosed", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still running after Close", name)
		}
	}
	if c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
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

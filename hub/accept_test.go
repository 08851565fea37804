package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"

	"github.com/presencehub/presencehub/queues"
)

func claims(ttl time.Duration) Claims {
	now := time.Now()
	return Claims{Name: "Al", Workspace: "acme", Role: "agent", RegisteredClaims: jwt.RegisteredClaims{
		Subject: "al", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
}

func TestAuthFailuresGetNoSocket(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Origins = []string{"console.example.com"} })
	e.workspace("acme", queues.SettingsPatch{})

	sign := func(m jwt.SigningMethod, key any) string {
		s, err := jwt.NewWithClaims(m, claims(time.Hour)).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := token(t, "acme", "al", queues.RoleAgent, time.Hour)
	tests := []struct {
		name   string
		token  string
		origin string
		status int
		code   string
		reason string
	}{
		{"no token", "", "", 401, "unauthorized", RejectNoToken},
		{"bad signature", sign(jwt.SigningMethodHS256, []byte("another-secret-0123456789abcdef")), "", 401, "unauthorized", RejectBadToken},
		{"expired", token(t, "acme", "al", queues.RoleAgent, -time.Minute), "", 401, "unauthorized", RejectExpired},
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType), "", 401, "unauthorized", RejectBadToken},
		{"HS512", sign(jwt.SigningMethodHS512, testSecret), "", 401, "unauthorized", RejectBadToken},
		{"garbage", "not.a.jwt", "", 401, "unauthorized", RejectBadToken},
		{"service role", token(t, "acme", "hook", queues.RoleService, time.Hour), "", 403, "forbidden", RejectRole},
		{"foreign origin", good, "https://evil.example.net", 403, "forbidden", RejectOrigin},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.obs.rejections(tt.reason)
			var h http.Header
			if tt.origin != "" {
				h = http.Header{"Origin": {tt.origin}}
			}
			status, code := e.refusal(tt.token, h)
			if status != tt.status || code != tt.code {
				t.Errorf("got HTTP %d %q, want %d %q", status, code, tt.status, tt.code)
			}
			if got := e.obs.rejections(tt.reason) - before; got != 1 {
				t.Errorf("rejections %q: got %d more, want 1", tt.reason, got)
			}
		})
	}
	if n := e.obs.opened.Load(); n != 0 {
		t.Errorf("sockets opened: got %d, want 0", n)
	}
	if _, err := e.store.Agent("acme", "hook"); err == nil {
		t.Errorf("a refused token created its agent")
	}
}

func TestAcceptedOriginsHeaderTokenAndSubprotocol(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Origins = []string{"console.example.com", "https://*.helpdesk.test"} })
	e.workspace("acme", queues.SettingsPatch{})
	tok := token(t, "acme", "al", queues.RoleAgent, time.Hour)
	host := e.srv.Listener.Addr().String()
	for _, origin := range []string{"", "http://" + host, "https://console.example.com", "https://eu.helpdesk.test"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, _, err := websocket.Dial(ctx, "ws://"+host+"/ws", &websocket.DialOptions{
			HTTPHeader:   http.Header{"Authorization": {"Bearer " + tok}, "Origin": {origin}},
			Subprotocols: []string{Subprotocol},
		})
		cancel()
		if err != nil {
			t.Errorf("origin %q: %v", origin, err)
			continue
		}
		c := startClient(t, conn)
		c.hello()
		if got := conn.Subprotocol(); got != Subprotocol {
			t.Errorf("subprotocol: got %q, want %q", got, Subprotocol)
		}
		c.leave()
	}
	if status, _ := e.refusal(tok, http.Header{"Origin": {"http://eu.helpdesk.test"}}); status != 403 {
		t.Errorf("a pattern with a scheme matched another scheme: got HTTP %d, want 403", status)
	}
}

func TestBadSinceIsRefused(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, e.wsURL(token(t, "acme", "al", queues.RoleAgent, time.Hour), "since", "yesterday"), nil)
	if err == nil || resp == nil || resp.StatusCode != 400 {
		t.Errorf("since=yesterday: got %v, want HTTP 400", err)
	}
}

// TestEarlyFrameIsKept: a client that sends its first request right behind
// the handshake, without waiting for the 101, gets it answered: the bytes
// the server read ahead move into the connection's own buffer.
func TestEarlyFrameIsKept(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr := e.srv.Listener.Addr().String()
	s, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var req bytes.Buffer
	fmt.Fprintf(&req, "GET /ws?access_token=%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		token(t, "acme", "al", queues.RoleAgent, time.Hour), addr)
	req.Write(maskedText(`{"id":"early","op":"settings"}`))
	if _, err := s.Write(req.Bytes()); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(s)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	var got []string
	for !slices.ContainsFunc(got, func(m string) bool { return strings.Contains(m, `"type":"reply"`) }) {
		payload, err := readFrame(br)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, strings.Split(string(payload), "\n")...)
	}
	if !strings.Contains(got[0], `"type":"hello"`) || !strings.Contains(got[len(got)-1], `"id":"early","ok":true`) {
		t.Errorf("got %q, want hello, then the reply to the early request", got)
	}
}

// readFrame reads one unmasked, unfragmented frame from the hub.
func readFrame(r *bufio.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return p, err
}

// TestUpgradeHasNoDateHeader: the 101 leaves Date out (RFC 9110 allows it
// for an informational response, and formatting it cost every connect);
// a refusal, a final response, still carries it.
func TestUpgradeHasNoDateHeader(t *testing.T) {
	e := newEnv(t)
	e.workspace("acme", queues.SettingsPatch{})
	addr := e.srv.Listener.Addr().String()
	for _, tc := range []struct {
		query    string
		status   int
		wantDate bool
	}{
		{"?access_token=" + token(t, "acme", "al", queues.RoleAgent, time.Hour), http.StatusSwitchingProtocols, false},
		{"", http.StatusUnauthorized, true},
	} {
		s, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(s, "GET /ws%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", tc.query, addr)
		s.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(s), nil)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
		}
		if _, ok := resp.Header["Date"]; ok != tc.wantDate {
			t.Errorf("%d: Date header present %v, want %v", resp.StatusCode, ok, tc.wantDate)
		}
	}
}

// TestUpgradeIsHeldForTheHello: the 101 is not written as the connection
// is hijacked (net/http did, in a write of its own) but kept, for the hub
// to send in one write with the hello: until then the client reads
// nothing, and then it reads a complete 101 followed by the frame. Both
// writers do it: the blocking one (conn.write) and the inline one
// (writeBatchNow), which here meets a send buffer too small for the
// frame and leaves the rest for writeLoop, as on a slow client.
func TestUpgradeIsHeldForTheHello(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) { testUpgradeIsHeld(t, inline) })
	}
}

func testUpgradeIsHeld(t *testing.T, inline bool) {
	accepted, proceed := make(chan *smallBuffers, 1), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(proceed) }) }
	defer release() // a failed test must not leave the handler waiting
	hello := []byte(`{"type":"hello"}`)
	if inline {
		// Larger than any send buffer the kernel allows for 4 KiB asked.
		hello = fmt.Appendf(nil, `{"type":"hello","pad":%q}`, strings.Repeat("x", 1<<20))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sb := &smallBuffers{ResponseWriter: w}
		ws, err := websocket.Accept(sb, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
		if err != nil {
			t.Error(err)
			return
		}
		ws.CloseNow()
		accepted <- sb
		<-proceed
		c := &conn{h: &Hub{obs: nopObserver{}, cfg: Config{WriteTimeout: 5 * time.Second}}, raw: sb.conn, upgrade: sb.response}
		frame, _ := frameOf(hello)
		if !inline {
			if err := c.write(frame); err != nil {
				t.Error(err)
			}
			sb.conn.Close()
			return
		}
		sb.conn.(*net.TCPConn).SetWriteBuffer(4096)
		c.rc, _ = sb.conn.(*net.TCPConn).SyscallConn()
		msgs := []outMsg{{frame: frame}}
		done, rest, err := c.writeBatchNow(msgs)
		if err != nil || done != 1 || rest == nil || c.upgrade != nil {
			t.Errorf("inline: done %d, rest %d bytes, upgrade kept %v, %v; want the 101 and part of the frame written", done, len(rest), c.upgrade != nil, err)
		}
		if err := c.writeBatch(rest, nil); err != nil {
			t.Error(err)
		}
		sb.conn.Close()
	}))
	defer srv.Close()
	s, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fmt.Fprintf(s, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", Subprotocol)
	var sb *smallBuffers
	select {
	case sb = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never accepted")
	}
	if len(sb.response) == 0 {
		t.Fatal("no 101 kept")
	}
	s.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := s.Read(make([]byte, 1)); n > 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client read %d bytes (%v) before the hub wrote: the 101 went out on its own", n, err)
	}
	release()
	if inline {
		time.Sleep(100 * time.Millisecond) // let the hub fill its send buffer first
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(s)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" ||
		resp.Header.Get("Sec-Websocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" ||
		resp.Header.Get("Sec-Websocket-Protocol") != Subprotocol {
		t.Errorf("101: %d %v", resp.StatusCode, resp.Header)
	}
	if payload, err := readFrame(br); err != nil || !bytes.Equal(payload, hello) {
		t.Errorf("after the 101: %d bytes, %v; want the hello frame (%d bytes)", len(payload), err, len(hello))
	}
}

package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/presencehub/presencehub/queues"
)

// ensureTimeout bounds the store write that registers the agent of a new
// connection.
const ensureTimeout = 5 * time.Second

// ServeHTTP is the /ws endpoint. Everything that can refuse a connection is
// checked before the upgrade, so a refused client gets an HTTP status and a
// JSON error, never a socket: the token (401), its role (403), the Origin
// (403), the since parameter (400), the store (503).
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.reg.isClosed() {
		h.refuse(w, http.StatusServiceUnavailable, codeUnavailable, "the hub is shutting down", RejectShutdown)
		return
	}
	id, err := h.cfg.Verifier.Verify(tokenFrom(r))
	if err != nil {
		reason := RejectBadToken
		switch {
		case errors.Is(err, ErrNoToken):
			reason = RejectNoToken
			w.Header().Set("WWW-Authenticate", `Bearer realm="presencehub"`)
		case errors.Is(err, ErrExpired):
			reason = RejectExpired
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token", error_description="expired"`)
		default:
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		}
		h.refuse(w, http.StatusUnauthorized, "unauthorized", err.Error(), reason)
		return
	}
	if id.Role == queues.RoleService {
		h.refuse(w, http.StatusForbidden, codeForbidden, "a service token cannot open a socket", RejectRole)
		return
	}
	if err := checkOrigin(r, h.cfg.Origins); err != nil {
		h.refuse(w, http.StatusForbidden, codeForbidden, err.Error(), RejectOrigin)
		return
	}
	since, resume, err := sinceParam(r)
	if err != nil {
		h.refuse(w, http.StatusBadRequest, codeBadRequest, err.Error(), "")
		return
	}

	// The agent exists before anything reads it: hello lists them, and
	// others can assign to them from now on. A new agent is created online,
	// in the same change: from here on the tracker must hear of this
	// connection, so every way out before start tells it (abandon).
	// A request that is no WebSocket handshake at all only registers the
	// agent: Accept refuses it below, and nobody should see them online.
	// A client that gives up meanwhile does not cancel the commit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), ensureTimeout)
	agent := queues.Agent{ID: id.Agent, Name: id.Name, Role: id.Role}
	connecting := wantsWebSocket(r)
	var created, known bool
	if connecting {
		_, aerr := h.cfg.Backend.Agent(id.Workspace, id.Agent)
		known = aerr == nil
		_, created, err = h.cfg.Backend.ConnectAgent(ctx, id.Workspace, agent)
	} else {
		_, err = h.cfg.Backend.EnsureAgent(ctx, id.Workspace, agent)
	}
	cancel()
	abandon := func() {
		if created {
			// Online in the store with no connection: as for a console
			// that connected and dropped, the grace takes them offline.
			h.cfg.Presence.Connect(id.Workspace, id.Agent)
			h.cfg.Presence.Disconnect(id.Workspace, id.Agent)
		}
	}
	if err != nil {
		if connecting && !known && errors.Is(err, context.DeadlineExceeded) {
			// A change whose write was under way when the wait here ended
			// still commits: a new agent may be online, and the tracker
			// would never hear of them. (A known agent is never made
			// online here, and a failed batch commits nothing.)
			// EnsureAgent settles it: it runs after that change, if the
			// change ran at all, and else registers the agent offline. If
			// they are online, they were created by this request or by
			// another first connection of theirs running alongside, whose
			// own connect the tracker hears too: a connection that opened
			// and closed then starts the grace, or changes nothing. If
			// EnsureAgent fails as well, the tracker is told all the same:
			// an error in the log is better than an agent online for good.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), ensureTimeout)
			a, aerr := h.cfg.Backend.EnsureAgent(ctx, id.Workspace, agent)
			cancel()
			if aerr != nil {
				h.log.Warn("connect: agent not settled after a timeout", "ws", id.Workspace, "agent", id.Agent, "err", aerr)
			}
			if aerr != nil || a.Status != queues.StatusOffline {
				created = true
				abandon()
			}
		}
		h.log.Warn("connect: agent not registered", "ws", id.Workspace, "agent", id.Agent, "err", err)
		h.refuse(w, http.StatusServiceUnavailable, codeUnavailable, "the store cannot take connections right now; retry later", "")
		return
	}

	c := newConn(h, id)
	opts := &websocket.AcceptOptions{
		Subprotocols:   []string{Subprotocol},
		OriginPatterns: h.cfg.Origins,
		// Compression would cost every connection a compressor and every
		// recipient of an event its own encoding of the same bytes.
		CompressionMode: websocket.CompressionDisabled,
	}
	if !canHijack(w) {
		// Accept answers 501 itself.
		websocket.Accept(w, r, opts)
		abandon()
		return
	}
	sb := &smallBuffers{ResponseWriter: w}
	ws, err := websocket.Accept(sb, r, opts)
	if err != nil {
		// Accept has answered the request (not a WebSocket handshake).
		h.log.Debug("upgrade failed", "ws", id.Workspace, "agent", id.Agent, "err", err)
		abandon()
		return
	}
	// The handshake is done, and with it the library's part: the hub reads
	// and writes frames itself (reader.go, frame.go). CloseNow lets go of
	// what the library's Conn holds; the socket stays open (libConn).
	ws.CloseNow()
	c.raw = sb.conn
	c.upgrade = sb.response
	c.rd.frames.partial = sb.early
	if sc, ok := sb.conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.rc = rc
		}
	}
	if !h.reg.add(c, &h.wg) {
		c.raw.SetWriteDeadline(time.Now().Add(closeTimeout))
		c.write(closeFrame(websocket.StatusGoingAway, "server shutting down"))
		c.raw.Close()
		abandon()
		return
	}
	h.obs.ConnOpened()
	c.start(since, resume)
}

// wantsWebSocket reports whether r asks for a WebSocket (a GET with
// "Upgrade: websocket"); websocket.Accept checks the rest of the handshake.
func wantsWebSocket(r *http.Request) bool {
	if r.Method != http.MethodGet {
		return false
	}
	for _, v := range r.Header.Values("Upgrade") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "websocket") {
				return true
			}
		}
	}
	return false
}

// refuse answers a request that gets no socket. reason, when set, is
// counted with Observer.Rejected.
func (h *Hub) refuse(w http.ResponseWriter, status int, code, msg, reason string) {
	if reason != "" {
		h.obs.Rejected(reason)
	}
	type body struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	b, _ := json.Marshal(struct {
		Error body `json:"error"`
	}{body{Code: code, Message: msg}})
	hd := w.Header()
	hd.Set("Content-Type", "application/json")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// sinceParam reads the optional since query parameter.
func sinceParam(r *http.Request) (since uint64, ok bool, err error) {
	s := r.URL.Query().Get("since")
	if s == "" {
		return 0, false, nil
	}
	since, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("since: must be a sequence number")
	}
	return since, true, nil
}

// checkOrigin allows a request without Origin (not a browser), one from the
// request's own host, and one whose origin host matches a pattern, with the
// rules of coder/websocket's OriginPatterns. It runs before the upgrade so
// a refusal is counted and answered like the others.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("origin %q is not a URL with a host", origin)
	}
	if strings.EqualFold(r.Host, u.Host) {
		return nil
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); err == nil && ok {
			return nil
		}
	}
	return fmt.Errorf("origin %q is not allowed", u.Host)
}

// smallBuffers wraps the ResponseWriter of an upgrade so that Hijack hands
// websocket.Accept a connection it cannot close and the smallest buffers
// bufio allows, and so that the 101 is not written by net/http as it
// hijacks but kept (response) for the hub to send in one system call with
// the hello. The library only answers the handshake; the hub then reads
// and writes the socket itself, so net/http's 4 KiB buffers become garbage
// once ServeHTTP returns, and the library's as soon as Accept does.
type smallBuffers struct {
	http.ResponseWriter
	conn     net.Conn // the hijacked connection, once Hijack has run
	early    []byte   // bytes the server read past the request (a client that sent its first frame without waiting)
	upgrade  bool     // WriteHeader(101) was called and held back
	response []byte   // the 101 as it goes on the wire, once Hijack has run
}

// WriteHeader holds a 101 back for Hijack; anything else goes to net/http,
// without the handshake's headers if a 101 was held back first (the
// library answers a failed hijack with a 500).
func (w *smallBuffers) WriteHeader(code int) {
	if code == http.StatusSwitchingProtocols {
		w.upgrade = true
		return
	}
	if w.upgrade {
		w.upgrade = false
		for _, k := range []string{"Upgrade", "Connection", "Sec-Websocket-Accept", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
			w.Header().Del(k)
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// Hijack implements http.Hijacker.
func (w *smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = nc
	if brw.Writer.Buffered() > 0 {
		// Nothing was written through net/http; flush anyway rather than
		// lose bytes.
		if err := brw.Writer.Flush(); err != nil {
			nc.Close()
			return nil, nil, err
		}
	}
	if w.upgrade {
		// The headers websocket.Accept set, without the Date net/http would
		// add: RFC 9110 lets an informational response go without it, and
		// formatting it was 5 % of the hub's CPU in a reconnect storm.
		var b bytes.Buffer
		b.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
		w.Header().Write(&b)
		b.WriteString("\r\n")
		w.response = b.Bytes()
	}
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		w.early = bytes.Clone(early)
	}
	lc := libConn{nc}
	return lc, bufio.NewReadWriter(bufio.NewReaderSize(lc, 16), bufio.NewWriterSize(lc, 16)), nil
}

// libConn is the connection as the library sees it: closing it does
// nothing, because the hub, not the library's Conn, owns the socket.
type libConn struct{ net.Conn }

// Close implements net.Conn, as a no-op.
func (libConn) Close() error { return nil }

// canHijack reports whether w, or a ResponseWriter it wraps, can be
// hijacked, as websocket.Accept and http.ResponseController look for it.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

package hub

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// Front answers WebSocket handshakes straight off a listener, and hands
// every other connection to an http.Server.
//
// Through net/http, a connect paid for machinery that a socket which is
// hijacked at once never uses: a 4 KiB read buffer and a 4 KiB write
// buffer (allocated afresh each time, since a hijacked connection never
// returns them to net/http's pools), two contexts, a goroutine that
// watches the connection while the handler runs and has to be stopped
// again to hijack it, and the per-connection state around them. Front
// reads the request head into a pooled buffer, parses it with
// http.ReadRequest, and calls the hub's ServeHTTP with a ResponseWriter
// that writes a refusal itself and hijacks for nothing. Everything the
// hub checks (token, role, Origin, since) and answers is unchanged.
//
// A connection goes on to the http.Server, with the bytes already read
// put back in front of it, unless its head is an HTTP/1.1 GET of the
// WebSocket path asking for "Upgrade: websocket", fits in frontHeadMax
// bytes, and passes the checks net/http's server makes before calling a
// handler: the console, the API, /metrics and any unusual request get
// net/http exactly as before, refusals included. Close and Shutdown stop
// it as http.Server's do; a server using a Front shuts both down.
type Front struct {
	h       *Hub
	ln      net.Listener
	path    string
	start   []byte        // "GET " + path: how a head Front answers begins
	timeout time.Duration // for the whole request head

	handoff chan net.Conn // to Listener's Accept
	done    chan struct{} // closed by Close

	mu      sync.Mutex
	closed  bool                  // guarded by mu
	waiting map[net.Conn]struct{} // guarded by mu: reading a head, or draining after a refusal: Close cuts them short
	wg      sync.WaitGroup        // a goroutine per connection not yet answered or handed on; Add under mu, before closed
}

// frontHeadMax is the longest request head Front reads itself. A browser
// sends a few hundred bytes; one with many cookies goes on to net/http,
// which allows more.
const frontHeadMax = 4 << 10

// headBufs recycles the buffers request heads are read into, and
// headReaders the readers http.ReadRequest parses them with.
var (
	headBufs    = sync.Pool{New: func() any { b := make([]byte, frontHeadMax); return &b }}
	headReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, frontHeadMax) }}
)

// NewFront returns a Front that serves h on path from ln; a request head
// must arrive within headerTimeout (0: no limit, as for http.Server).
func NewFront(h *Hub, ln net.Listener, path string, headerTimeout time.Duration) *Front {
	return &Front{h: h, ln: ln, path: path, start: []byte("GET " + path), timeout: headerTimeout,
		handoff: make(chan net.Conn), done: make(chan struct{}), waiting: make(map[net.Conn]struct{})}
}

// Serve accepts connections until the listener is closed, and returns the
// error that ended it (net.ErrClosed after Close).
func (f *Front) Serve() error {
	var delay time.Duration
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			if f.isClosed() {
				return net.ErrClosed
			}
			if retryAccept(err) {
				// Out of descriptors, say: as net/http does, wait a little
				// and go on rather than give up serving.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.h.log.Warn("accept", "err", err, "retry_in", delay)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-f.done:
					t.Stop()
				}
				continue
			}
			return err
		}
		delay = 0
		if !f.track() {
			nc.Close()
			return net.ErrClosed
		}
		go func() { // ends when the request is answered or handed on
			defer f.wg.Done()
			f.serveConn(nc)
		}()
	}
}

// retryAccept reports whether an Accept error passes: the process or the
// system is out of descriptors, or a connection was aborted before it was
// accepted.
func retryAccept(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}

// Listener is what the http.Server serves: the connections Front hands on.
func (f *Front) Listener() net.Listener { return frontListener{f} }

// Close stops accepting: Serve returns, and so does the Listener's Accept.
// Connections still sending their request head are closed; a handshake
// already read goes on (the hub refuses it if it is shutting down).
func (f *Front) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	close(f.done)
	for nc := range f.waiting {
		nc.SetReadDeadline(aLongTimeAgo)
	}
	return f.ln.Close()
}

// Shutdown closes f and waits, until ctx is done, for the handshakes it
// was answering: as http.Server.Shutdown waits for its handlers.
func (f *Front) Shutdown(ctx context.Context) error {
	f.Close()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }() // ends when the last handshake does
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// aLongTimeAgo is a deadline that has passed: setting it ends a read.
var aLongTimeAgo = time.Unix(1, 0)

func (f *Front) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// track counts a new connection's goroutine, unless f is closed.
func (f *Front) track() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.wg.Add(1)
	return true
}

// wait marks nc as waiting for its peer (Close ends the wait), or no
// longer; it reports false if f is closed, and nc should be let go.
func (f *Front) wait(nc net.Conn, on bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !on {
		delete(f.waiting, nc)
		return true
	}
	if f.closed {
		return false
	}
	f.waiting[nc] = struct{}{}
	return true
}

// serveConn reads one request head and answers it, or hands the
// connection on.
func (f *Front) serveConn(nc net.Conn) {
	defer func() {
		// As net/http does for a handler: one bad request must not take
		// the hub down with it.
		if v := recover(); v != nil {
			f.h.log.Error("handshake panicked", "remote", nc.RemoteAddr().String(), "panic", v, "stack", string(debug.Stack()))
			f.wait(nc, false)
			nc.Close()
		}
	}()
	bp := headBufs.Get().(*[]byte)
	defer headBufs.Put(bp)
	buf := *bp
	var deadline time.Time // none, as net/http's 0 means
	if f.timeout > 0 {
		deadline = time.Now().Add(f.timeout)
	}
	nc.SetReadDeadline(deadline)
	if !f.wait(nc, true) {
		nc.Close()
		return
	}
	n, end := 0, -1
	for end < 0 {
		m, err := nc.Read(buf[n:])
		from := max(0, n-2)
		n += m
		if end = headEnd(buf[:n], from); end >= 0 {
			break
		}
		if err != nil {
			// Nothing useful came in time, or Close cut the wait short:
			// as net/http would, just close.
			f.wait(nc, false)
			nc.Close()
			return
		}
		if n == len(buf) || !f.mayBeHandshake(buf[:n]) {
			f.wait(nc, false)
			f.handOn(nc, buf[:n], deadline)
			return
		}
	}
	f.wait(nc, false)
	if !f.mayBeHandshake(buf[:end]) {
		f.handOn(nc, buf[:n], deadline)
		return
	}
	br := headReaders.Get().(*bufio.Reader)
	br.Reset(bytes.NewReader(buf[:end]))
	req, err := http.ReadRequest(br)
	br.Reset(nil)
	headReaders.Put(br)
	if err != nil || req.URL.Path != f.path || !wantsWebSocket(req) || !serverWouldAccept(req) {
		f.handOn(nc, buf[:n], deadline)
		return
	}
	nc.SetReadDeadline(time.Time{})
	req.RemoteAddr = nc.RemoteAddr().String()
	w := &frontWriter{f: f, nc: nc, early: bytes.Clone(buf[end:n])}
	f.h.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
	}
}

// headEnd returns where the request head in b ends: after the first empty
// line, which starts at or after from. Lines may end in "\r\n" or, as
// net/http also accepts, a bare "\n". It returns -1 if the head is not
// whole yet.
func headEnd(b []byte, from int) int {
	for i := from; ; i++ {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j
		if i+1 < len(b) && b[i+1] == '\n' {
			return i + 2
		}
		if i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n' {
			return i + 3
		}
	}
}

// serverWouldAccept reports whether req passes the checks net/http's
// server makes before it calls a handler, with the same validators. One
// that does not goes on to net/http, which refuses it as it always has.
// Front answers only HTTP/1.1 (what a WebSocket handshake is) with one
// valid Host, no Expect and no body.
func serverWouldAccept(req *http.Request) bool {
	if req.ProtoMajor != 1 || req.ProtoMinor != 1 || len(req.Header["Expect"]) > 0 {
		return false
	}
	// A handshake has no body; one that says otherwise is net/http's to
	// read (the parser's reader goes back to its pool).
	if req.ContentLength != 0 || len(req.TransferEncoding) > 0 {
		return false
	}
	// http.ReadRequest has moved the Host header to req.Host.
	if req.Host == "" || !httpguts.ValidHostHeader(req.Host) {
		return false
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return false
			}
		}
	}
	return true
}

// mayBeHandshake reports whether head, or the start of it, can still be a
// GET of the WebSocket path: "GET /ws" then a space or a query.
func (f *Front) mayBeHandshake(head []byte) bool {
	n := len(f.start)
	if len(head) <= n {
		return bytes.HasPrefix(f.start, head)
	}
	return bytes.HasPrefix(head, f.start) && (head[n] == ' ' || head[n] == '?')
}

// handOn gives nc, with read already taken from it, to the http.Server.
// The head keeps the deadline it had here: net/http's own header timeout
// does not start again.
func (f *Front) handOn(nc net.Conn, read []byte, deadline time.Time) {
	pc := &prefixConn{Conn: nc, prefix: bytes.Clone(read), headBy: deadline}
	select {
	case f.handoff <- pc:
	case <-f.done:
		nc.Close()
	}
}

// frontListener is the net.Listener of the connections Front hands on.
type frontListener struct{ f *Front }

func (l frontListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.f.handoff:
		return c, nil
	case <-l.f.done:
		return nil, net.ErrClosed
	}
}

func (l frontListener) Close() error   { return l.f.Close() }
func (l frontListener) Addr() net.Addr { return l.f.ln.Addr() }

// prefixConn is a connection whose first bytes were already read: Read
// returns them first. It passes on what net/http and the hub look for in
// a *net.TCPConn: the raw connection (once the prefix is read), the
// half-close, and ReadFrom (sendfile).
type prefixConn struct {
	net.Conn
	prefix []byte
	headBy time.Time // the first head's deadline, until net/http sets its own
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SetReadDeadline implements net.Conn. With a header timeout, the first
// deadline net/http sets is for the first request's head, which started
// arriving at Front: it is held to the deadline Front gave it.
func (c *prefixConn) SetReadDeadline(t time.Time) error {
	if !c.headBy.IsZero() {
		// A zero first deadline is not the head's: a server without a
		// header timeout clears the deadline once it has read the head.
		if !t.IsZero() && t.After(c.headBy) {
			t = c.headBy
		}
		c.headBy = time.Time{}
	}
	return c.Conn.SetReadDeadline(t)
}

// SyscallConn gives the socket's raw connection once the prefix has been
// read (net/http reads it whole with its first read), so that a handshake
// net/http answered keeps the hub's non-blocking reads and inline writes.
func (c *prefixConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok || len(c.prefix) > 0 {
		return nil, errors.New("hub: no raw connection")
	}
	return sc.SyscallConn()
}

// CloseWrite shuts the sending side, as net/http does before it closes.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom lets net/http send a file with sendfile, as it would on the
// connection itself.
func (c *prefixConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.Conn, r)
}

// frontWriter is the http.ResponseWriter Front gives the hub: a handshake
// hijacks the connection; any other answer is written out whole, with
// "Connection: close", when the hub is done.
type frontWriter struct {
	f        *Front
	nc       net.Conn
	early    []byte // bytes read past the request head
	header   http.Header
	status   int
	body     bytes.Buffer
	hijacked bool
}

func (w *frontWriter) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

func (w *frontWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *frontWriter) Write(b []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	w.WriteHeader(http.StatusOK)
	return w.body.Write(b)
}

// Hijack implements http.Hijacker. The reader has the bytes read past the
// request buffered, then reads the connection.
func (w *frontWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	w.hijacked = true
	r := bufio.NewReaderSize(io.MultiReader(bytes.NewReader(w.early), w.nc), max(16, len(w.early)))
	if len(w.early) > 0 {
		r.Peek(len(w.early))
	}
	return w.nc, bufio.NewReadWriter(r, bufio.NewWriterSize(w.nc, 16)), nil
}

// finish writes the answer and closes the connection.
func (w *frontWriter) finish() {
	defer w.nc.Close()
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 ")
	b.WriteString(strconv.Itoa(status))
	b.WriteByte(' ')
	b.WriteString(http.StatusText(status))
	b.WriteString("\r\n")
	h := w.Header()
	h.Set("Content-Length", strconv.Itoa(w.body.Len()))
	if h.Get("Upgrade") != "" {
		// A 426 names the protocol to upgrade to; RFC 9110 (7.8) has
		// "upgrade" in Connection then.
		h.Set("Connection", "Upgrade, close")
	} else {
		h.Set("Connection", "close")
	}
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	h.Write(&b)
	b.WriteString("\r\n")
	b.Write(w.body.Bytes())
	w.nc.SetWriteDeadline(time.Now().Add(closeTimeout))
	if _, err := w.nc.Write(b.Bytes()); err != nil {
		return
	}
	// Close the sending side first, as net/http does, so that bytes the
	// client sent meanwhile do not turn the close into a reset that could
	// lose the answer.
	if tc, ok := w.nc.(interface{ CloseWrite() error }); ok {
		tc.CloseWrite()
		w.nc.SetReadDeadline(time.Now().Add(closeTimeout))
		if w.f.wait(w.nc, true) {
			io.Copy(io.Discard, io.LimitReader(w.nc, 64<<10))
			w.f.wait(w.nc, false)
		}
	}
}

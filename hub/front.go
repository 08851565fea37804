package hub

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"
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
// put back in front of it, unless its head is a GET of the WebSocket path
// asking for "Upgrade: websocket" that fits in frontHeadMax bytes and
// parses: the console, the API, /metrics and any unusual request get
// net/http exactly as before.
type Front struct {
	h       *Hub
	ln      net.Listener
	path    string
	start   []byte        // "GET " + path: how a head Front answers begins
	timeout time.Duration // for the whole request head

	handoff chan net.Conn // to Listener's Accept
	done    chan struct{} // closed by Close
	once    sync.Once
}

// frontHeadMax is the longest request head Front reads itself. A browser
// sends a few hundred bytes; one with many cookies goes on to net/http,
// which allows more.
const frontHeadMax = 4 << 10

// headBufs recycles the buffers request heads are read into.
var headBufs = sync.Pool{New: func() any { b := make([]byte, frontHeadMax); return &b }}

// NewFront returns a Front that serves h on path from ln; a request head
// must arrive within headerTimeout.
func NewFront(h *Hub, ln net.Listener, path string, headerTimeout time.Duration) *Front {
	return &Front{h: h, ln: ln, path: path, start: []byte("GET " + path), timeout: headerTimeout,
		handoff: make(chan net.Conn), done: make(chan struct{})}
}

// Serve accepts connections until the listener is closed, and returns the
// error that ended it.
func (f *Front) Serve() error {
	var delay time.Duration
	for {
		nc, err := f.ln.Accept()
		if err != nil {
			select {
			case <-f.done:
				return net.ErrClosed
			default:
			}
			if retryAccept(err) {
				// Out of descriptors, say: as net/http does, wait a little
				// and go on rather than give up serving.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				f.h.log.Warn("accept", "err", err, "retry_in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		go f.serveConn(nc) // ends when the handshake is answered or handed on
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
func (f *Front) Close() error {
	var err error
	f.once.Do(func() {
		close(f.done)
		err = f.ln.Close()
	})
	return err
}

// serveConn reads one request head and answers it, or hands the
// connection on.
func (f *Front) serveConn(nc net.Conn) {
	defer func() {
		// As net/http does for a handler: one bad request must not take
		// the hub down with it.
		if v := recover(); v != nil {
			f.h.log.Error("handshake panicked", "remote", nc.RemoteAddr().String(), "panic", v, "stack", string(debug.Stack()))
			nc.Close()
		}
	}()
	bp := headBufs.Get().(*[]byte)
	defer headBufs.Put(bp)
	buf := *bp
	nc.SetReadDeadline(time.Now().Add(f.timeout))
	n, end := 0, -1
	for end < 0 {
		m, err := nc.Read(buf[n:])
		from := max(0, n-3)
		n += m
		if i := bytes.Index(buf[from:n], []byte("\r\n\r\n")); i >= 0 {
			end = from + i + 4
			break
		}
		if err != nil {
			// Nothing useful came in time: as net/http would, just close.
			nc.Close()
			return
		}
		if n == len(buf) || !f.mayBeHandshake(buf[:n]) {
			f.handOn(nc, buf[:n])
			return
		}
	}
	if !f.mayBeHandshake(buf[:end]) {
		f.handOn(nc, buf[:n])
		return
	}
	req, err := http.ReadRequest(bufio.NewReaderSize(bytes.NewReader(buf[:end]), end))
	if err != nil || req.URL.Path != f.path || !wantsWebSocket(req) {
		f.handOn(nc, buf[:n])
		return
	}
	nc.SetReadDeadline(time.Time{})
	req.RemoteAddr = nc.RemoteAddr().String()
	w := &frontWriter{nc: nc, early: bytes.Clone(buf[end:n])}
	f.h.ServeHTTP(w, req)
	if !w.hijacked {
		w.finish()
	}
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
func (f *Front) handOn(nc net.Conn, read []byte) {
	nc.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: nc, prefix: bytes.Clone(read)}
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
// returns them first.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// frontWriter is the http.ResponseWriter Front gives the hub: a handshake
// hijacks the connection; any other answer is written out whole, with
// "Connection: close", when the hub is done.
type frontWriter struct {
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
	h.Set("Connection", "close")
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
		io.Copy(io.Discard, io.LimitReader(w.nc, 64<<10))
	}
}

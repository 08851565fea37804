package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// upgrader is the http.RoundTripper of the tool's WebSocket handshakes:
// it dials, writes the request, reads the response and hands the
// connection to coder/websocket as the response body, which is what the
// library asks of a transport. http.Transport does the same with two
// goroutines, two 4 KiB buffers and channel handoffs per connection, all
// for pooling that a hijacked connection never uses; a connect storm pays
// that thousands of times a second on the cores it shares with the hub.
type upgrader struct{ d *loopbackDialer }

// reqBufs holds the buffers requests are serialised into, so each goes out
// in one write.
var reqBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (u upgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, fmt.Errorf("hubload speaks http:// to the hub, not %s://", req.URL.Scheme)
	}
	ctx := req.Context()
	host := req.URL.Host
	if req.URL.Port() == "" {
		host = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	nc, err := u.d.DialContext(ctx, "tcp", host)
	if err != nil {
		return nil, err
	}
	// The handshake is bounded by the request's context; the connection
	// then belongs to the caller, with no deadline.
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	resp, err := handshake(nc, req)
	if !stop() {
		// The context ended the handshake: say so, not "i/o timeout".
		if err != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		} else {
			err = ctx.Err()
		}
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	return resp, nil
}

// handshake writes req on nc and reads the response. A 101's body is the
// connection itself, read through the buffer that holds whatever the hub
// sent after its response (often the hello); any other response's body is
// what the hub said, and closing it closes the connection.
func handshake(nc net.Conn, req *http.Request) (*http.Response, error) {
	buf := reqBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer reqBufs.Put(buf)
	if err := req.Write(buf); err != nil {
		return nil, err
	}
	if _, err := nc.Write(buf.Bytes()); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 1024)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &upgraded{br: br, Conn: nc}
	} else {
		resp.Body = &refused{ReadCloser: resp.Body, nc: nc}
	}
	return resp, nil
}

// upgraded is an upgraded connection as a response body: reads drain the
// response's buffer first.
type upgraded struct {
	br *bufio.Reader
	net.Conn
}

func (u *upgraded) Read(p []byte) (int, error) { return u.br.Read(p) }

// refused is the body of a response that did not upgrade.
type refused struct {
	io.ReadCloser
	nc net.Conn
}

func (r *refused) Close() error {
	r.ReadCloser.Close()
	return r.nc.Close()
}

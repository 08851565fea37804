package hub

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// The incoming side of a connection. The hub reads the client's frames
// (RFC 6455, section 5) off the hijacked socket itself, as it writes its
// own (frame.go). websocket.Accept does the handshake; its Conn is then let
// go (accept.go), and with it a goroutine blocked in the library's reader,
// the reader's buffers and its state: about 7 KiB of every idle
// connection's memory, counting the garbage collector's headroom. What an
// idle connection keeps instead is one goroutine parked on the socket's
// readiness with a minimal stack and no buffer (readSome, in rawio_*.go);
// a buffer comes from a pool when there are bytes to read.
//
// The rules a server must enforce on what it reads: every client frame is
// masked; no reserved bit is set (no extension is negotiated); control
// frames are final and carry at most 125 bytes; a continuation belongs to
// an unfinished message and a new message waits for the last one's end.
// A violation fails the connection with 1002, a message over the limit
// with 1009, and the close handshake then runs as for any other close.

// Opcodes (section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the most a control frame may carry (section 5.5).
const maxControlPayload = 125

// readBufSize is the size of the pooled buffers the reader reads into. A
// request is a few hundred bytes; a bigger frame is gathered across reads.
const readBufSize = 4 << 10

var readPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// frameHead is a parsed frame header.
type frameHead struct {
	fin  bool
	op   byte
	mask [4]byte
	hlen int   // the header's length, masking key included
	plen int64 // the payload's length
}

// protocolError is a frame that breaks RFC 6455: it fails the connection
// with code.
type protocolError struct {
	code   websocket.StatusCode
	reason string
}

func (e *protocolError) Error() string { return e.reason }

func protoErr(reason string) error {
	return &protocolError{code: websocket.StatusProtocolError, reason: reason}
}

// parseHead parses the frame header at the start of b. ok is false when b
// does not hold all of it yet.
func parseHead(b []byte) (h frameHead, ok bool, err error) {
	if len(b) < 2 {
		return h, false, nil
	}
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0F
	if b[0]&0x70 != 0 {
		return h, false, protoErr("reserved bits set")
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin {
			return h, false, protoErr("fragmented control frame")
		}
	default:
		return h, false, protoErr("unknown opcode")
	}
	if b[1]&0x80 == 0 {
		return h, false, protoErr("unmasked client frame")
	}
	h.hlen = 2
	switch n := b[1] & 0x7F; n {
	case 126:
		h.hlen += 2
		if len(b) < h.hlen {
			return h, false, nil
		}
		h.plen = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		h.hlen += 8
		if len(b) < h.hlen {
			return h, false, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u>>63 != 0 {
			return h, false, protoErr("payload length overflows")
		}
		h.plen = int64(u)
	default:
		h.plen = int64(n)
	}
	if h.op >= opClose && h.plen > maxControlPayload {
		return h, false, protoErr("control frame too long")
	}
	if len(b) < h.hlen+4 {
		return h, false, nil
	}
	copy(h.mask[:], b[h.hlen:])
	h.hlen += 4
	return h, true, nil
}

// unmask undoes the client's masking of p in place (section 5.3).
func unmask(p []byte, key [4]byte) {
	k := binary.LittleEndian.Uint32(key[:])
	k8 := uint64(k)<<32 | uint64(k)
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^k8)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= key[i&3]
	}
}

// parseClose reads a close frame's payload (section 5.5.1): its status code
// (1005, "no status", when it has none) and reason.
func parseClose(p []byte) (websocket.StatusCode, string, error) {
	switch {
	case len(p) == 0:
		return websocket.StatusNoStatusRcvd, "", nil
	case len(p) == 1:
		return 0, "", protoErr("close frame of one byte")
	}
	code := websocket.StatusCode(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", protoErr("invalid close code")
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", &protocolError{code: websocket.StatusInvalidFramePayloadData, reason: "close reason is not UTF-8"}
	}
	return code, string(p[2:]), nil
}

// validCloseCode reports whether a peer may send code in a close frame
// (section 7.4): the defined codes that are not reserved for reporting
// locally, and the ranges for libraries and applications.
func validCloseCode(code websocket.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// controlFrame returns a whole unmasked control frame: op and payload,
// which must be at most maxControlPayload bytes.
func controlFrame(op byte, payload []byte) []byte {
	f := make([]byte, 2, 2+len(payload))
	f[0], f[1] = 0x80|op, byte(len(payload))
	return append(f, payload...)
}

// closeFrame returns a close frame for code and reason; the reason is cut
// to fit (at a rune boundary), and 1005 sends no status at all.
func closeFrame(code websocket.StatusCode, reason string) []byte {
	if code == websocket.StatusNoStatusRcvd || code == 0 {
		return controlFrame(opClose, nil)
	}
	for len(reason) > maxControlPayload-2 {
		_, n := utf8.DecodeLastRuneInString(reason)
		reason = reason[:len(reason)-n]
	}
	p := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(reason)), uint16(code))
	return controlFrame(opClose, append(p, reason...))
}

// pingFrame is the hub's keepalive ping; any frame from the client, the
// pong among them, shows it is alive.
var pingFrame = controlFrame(opPing, nil)

// errPeerClosed ends the reader when the peer's close frame has arrived;
// readLoop returns it as a websocket.CloseError.
var errPeerClosed = errors.New("close frame received")

// readState is the reader's parsing state between reads. Idle, all of it is
// empty: no buffer is held between frames.
type readState struct {
	partial []byte // the start of a frame not whole yet; nil between frames
	msg     []byte // the fragments so far of an unfinished message
	inMsg   bool   // a message has begun and not ended
	binary  bool   // the unfinished message is binary
	skip    int64  // payload bytes still to discard (a frame the hub will not read)
	failed  bool   // a protocol error: what follows is discarded unread
	closeRx *websocket.CloseError
}

// frameSink is what the parser tells of the frames it reads: the
// connection, or a test's recorder.
type frameSink interface {
	// closing reports whether the connection is closing: data frames are
	// then discarded unread, and only the peer's close frame matters.
	closingNow() bool
	// message takes one whole message; b is valid only during the call.
	message(b []byte, binary bool)
	// ping takes a ping's payload, to be sent back in a pong.
	ping(p []byte)
	// tooBig starts closing the connection for a message over the limit.
	tooBig()
}

// consume parses data, which the reader just read, and tells s of what it
// finds. A message over limit bytes is skipped unread (s.tooBig). The
// start of an unfinished frame stays in st for the next read. It returns
// errPeerClosed once the peer's close frame is in (st.closeRx), and a
// *protocolError for a frame that breaks the protocol, after which
// everything is discarded.
func consume(st *readState, data []byte, limit int64, s frameSink) error {
	need := 0 // the length of the unfinished frame, when known
	fromPartial := len(st.partial) > 0
	if fromPartial {
		data = append(st.partial, data...)
	}
	defer func() {
		// The rest of an unfinished frame waits for the next read in a
		// slice of its own (data may be a pooled buffer), made big enough
		// for the whole frame so that later reads append to it in place; a
		// connection between frames holds nothing.
		switch {
		case len(data) == 0:
			st.partial = nil
		case fromPartial && &data[0] == &st.partial[0]:
			st.partial = data // nothing taken: the same buffer, grown
		default:
			st.partial = append(make([]byte, 0, max(need, len(data))), data...)
		}
	}()
	for len(data) > 0 {
		if st.failed {
			data = nil
			break
		}
		if st.skip > 0 {
			n := min(st.skip, int64(len(data)))
			st.skip -= n
			data = data[n:]
			continue
		}
		h, ok, err := parseHead(data)
		if err != nil {
			st.failed = true
			return err
		}
		if !ok {
			break
		}
		if h.op >= opClose {
			end := h.hlen + int(h.plen)
			if len(data) < end {
				need = end
				break
			}
			p := data[h.hlen:end]
			unmask(p, h.mask)
			data = data[end:]
			switch h.op {
			case opPing:
				s.ping(p)
			case opClose:
				code, reason, err := parseClose(p)
				if err != nil {
					st.failed = true
					return err
				}
				st.closeRx = &websocket.CloseError{Code: code, Reason: reason}
				data = nil
				return errPeerClosed
			}
			continue
		}
		if h.op == opContinuation && !st.inMsg {
			st.failed = true
			return protoErr("continuation frame without a message")
		}
		if h.op != opContinuation && st.inMsg {
			st.failed = true
			return protoErr("new message before the last one ended")
		}
		// From here on, the state changes only once the frame is taken:
		// skipped, or whole. An unfinished frame is parsed again.
		closing := s.closingNow()
		if closing || int64(len(st.msg))+h.plen > limit {
			// Skipped unread: once the connection is closing nothing is
			// read any more (only the close frame matters), and a message
			// over the limit is never kept.
			if !closing {
				s.tooBig()
			}
			st.inMsg, st.msg = !h.fin, nil
			st.skip, data = h.plen, data[h.hlen:]
			continue
		}
		end := h.hlen + int(h.plen)
		if len(data) < end {
			need = end
			break
		}
		if h.op != opContinuation {
			st.binary = h.op == opBinary
		}
		st.inMsg = !h.fin
		p := data[h.hlen:end]
		unmask(p, h.mask)
		data = data[end:]
		if h.fin && len(st.msg) == 0 {
			s.message(p, st.binary)
			continue
		}
		st.msg = append(st.msg, p...)
		if h.fin {
			b := st.msg
			st.msg = nil
			s.message(b, st.binary)
		}
	}
	return nil
}

// readBlocking reads what the socket has into a buffer from readPool,
// waiting in Read with the buffer held; for sockets without a RawConn.
func (c *conn) readBlocking() (*[]byte, int, error) {
	buf := readPool.Get().(*[]byte)
	n, err := c.raw.Read(*buf)
	if n > 0 {
		return buf, n, nil // an error with it comes again on the next read
	}
	readPool.Put(buf)
	if err == nil {
		err = io.ErrNoProgress
	}
	return nil, 0, err
}

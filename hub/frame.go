package hub

import "encoding/binary"

// Data frames are written by the hub itself, straight to the hijacked TCP
// connection, rather than through websocket.Conn.Write. An event goes to
// thousands of sockets: its frame (header and payload) is built once, when
// it is published, and the same bytes are then written to every recipient
// in one system call each, with nothing done per recipient but the write.
// Going through the library would cost each recipient two lock round trips,
// a copy into its write buffer and a flush.
//
// Control frames (ping, pong, close) are written the same way, through
// the same send queue (reader.go, conn.closeSocket): every frame is a
// single Write call on the net.Conn, and one writer at a time writes.
//
// A server's frames are not masked (RFC 6455, section 5.1), so a frame is
// only a header in front of the payload (section 5.2).

// maxFrameHeader is the longest header of an unmasked frame: two bytes and
// a 64-bit length.
const maxFrameHeader = 10

// textFinal is the first header byte of a final (FIN) text frame.
const textFinal = 0x81

// frameHeader writes the header of a final text frame carrying n bytes into
// the end of dst (which must be maxFrameHeader long) and returns the part
// of dst it used.
func frameHeader(dst *[maxFrameHeader]byte, n int) []byte {
	switch {
	case n <= 125:
		dst[8], dst[9] = textFinal, byte(n)
		return dst[8:]
	case n <= 0xFFFF:
		dst[6], dst[7] = textFinal, 126
		binary.BigEndian.PutUint16(dst[8:], uint16(n))
		return dst[6:]
	default:
		dst[0], dst[1] = textFinal, 127
		binary.BigEndian.PutUint64(dst[2:], uint64(n))
		return dst[:]
	}
}

// frameOf returns a new slice holding a whole text frame of payload, and
// the payload's place in it.
func frameOf(payload []byte) (frame, inFrame []byte) {
	var h [maxFrameHeader]byte
	hd := frameHeader(&h, len(payload))
	frame = make([]byte, len(hd)+len(payload))
	copy(frame, hd)
	copy(frame[len(hd):], payload)
	return frame, frame[len(hd):]
}

// framed turns buf, whose first maxFrameHeader bytes are left free and the
// rest is a payload, into a frame of that payload, in place: it writes the
// header just before the payload and returns the frame.
func framed(buf []byte) []byte {
	var h [maxFrameHeader]byte
	hd := frameHeader(&h, len(buf)-maxFrameHeader)
	at := maxFrameHeader - len(hd)
	copy(buf[at:], hd)
	return buf[at:]
}

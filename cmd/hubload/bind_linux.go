package main

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// bindNoPort lets the kernel pick a dial's source port at connect time
// rather than at bind time (IP_BIND_ADDRESS_NO_PORT). Binding to a source
// address with port 0 otherwise makes the kernel search for a port that
// is free for every destination, which with tens of thousands of sockets
// (and those of earlier runs in TIME_WAIT) costs the load tool most of its
// CPU and caps the connect rate it can measure.
func bindNoPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

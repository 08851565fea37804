//go:build !linux

package main

import "syscall"

// bindNoPort is a Linux socket option; elsewhere dials bind as usual.
var bindNoPort func(network, address string, c syscall.RawConn) error

package main

import (
	"os"
	"syscall"
)

// flushData makes f's written data durable, as Badger's msync of its log
// does: fdatasync, which skips the inode's times but not a block a write
// allocated.
func flushData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

//go:build !linux

package main

import "os"

// flushData makes f's written data durable: fsync, where fdatasync is not
// at hand.
func flushData(f *os.File) error { return f.Sync() }

//go:build linux

package queues

import "syscall"

// diskFree is how many bytes an unprivileged writer may still use on dir's
// filesystem; ok is false when that cannot be known.
func diskFree(dir string) (free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}

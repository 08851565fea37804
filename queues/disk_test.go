package queues

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// On a full disk a commit is refused with ErrUnavailable instead of
// crashing the process (Badger writes its log through a memory map, where a
// full disk is a SIGBUS), and the store recovers when space comes back.
func TestFullDiskRefusesCommits(t *testing.T) {
	mnt := filepath.Join(t.TempDir(), "disk")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("needs a small filesystem to fill (mount -t tmpfs): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	dir := filepath.Join(mnt, "data")
	ctx := context.Background()
	s, err := Open(Options{Dir: dir, SyncWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	// Runs before the unmount registered above: whichever store is open
	// then is closed (Close is idempotent).
	t.Cleanup(func() { s.Close() })
	inbound := func(i int) error {
		_, err := s.Inbound(ctx, ws, Inbound{Conversation: fmt.Sprintf("c%d", i%5), MessageID: fmt.Sprintf("m%d", i),
			Channel: "email", Customer: "x", Text: string(make([]byte, 2048))})
		return err
	}
	for i := range 20 {
		if err := inbound(i); err != nil {
			t.Fatalf("before the disk filled: %v", err)
		}
	}

	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	f.Close()

	err = inbound(100)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, errDiskFull) {
		t.Fatalf("inbound on a full disk: got %v, want ErrUnavailable (disk full)", err)
	}
	if err := s.Ready(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Ready on a full disk: got %v", err)
	}
	if _, err := s.Conversation(ws, "c0"); err != nil {
		t.Errorf("reads on a full disk: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err != nil {
		t.Errorf("Ready once there is room: %v", err)
	}
	if err := inbound(101); err != nil {
		t.Fatalf("inbound once there is room: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	msgs, _ := s.Messages(ws, "c1", 0)
	if len(msgs) != 5 || msgs[4].ID != "m101" {
		t.Errorf("after restart c1 has %d messages, want 5 ending with m101", len(msgs))
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"slices"
	"time"
)

// diskCheck measures how long the disk under the data directory takes to
// make a small write durable, the way the store's write-ahead log does for
// every commit of a durable hub: a file of fixed size, set up front and
// written in turn, flushed after each write. Every durable change waits for
// one such flush (its batch's), so these figures are the floor of a
// change's latency, and a flush that stalls stalls every change made
// meanwhile. It is the hub's counterpart of PostgreSQL's pg_test_fsync: run
// it on the disk the hub will use, before choosing -durable, or when
// presencehub_store_commit_duration_seconds is slow.
func diskCheck(ctx context.Context, args []string, env lookupEnv, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("disk-check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dir      = fs.String("data", "./data", "directory to test: the hub's data directory (PRESENCEHUB_DATA)")
		rate     = fs.Int("rate", 500, "flushes per second (1 to 10000); the hub makes at most one per commit batch")
		duration = fs.Duration("duration", 20*time.Second, "how long to measure (at most 10m)")
		size     = fs.Int("size", 4096, "bytes written before each flush (512 to 1048576)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("disk-check: unexpected argument %q", fs.Arg(0))
	}
	seen := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { seen[f.Name] = true })
	if !seen["data"] {
		// As for serve: the environment, when set, even to "".
		if v, ok := env("PRESENCEHUB_DATA"); ok {
			*dir = v
		}
	}
	switch {
	case *dir == "":
		return errors.New("disk-check: -data (or PRESENCEHUB_DATA) is empty")
	case *rate < 1 || *rate > 10000:
		return fmt.Errorf("disk-check: -rate must be 1 to 10000, got %d", *rate)
	case *duration > 10*time.Minute || *duration < time.Second/time.Duration(*rate):
		return fmt.Errorf("disk-check: -duration must be at least one flush at -rate (%v) and at most 10m, got %v",
			time.Second/time.Duration(*rate), *duration)
	case *size < 512 || *size > 1<<20:
		return fmt.Errorf("disk-check: -size must be 512 to 1048576, got %d", *size)
	}
	if st, err := os.Stat(*dir); errors.Is(err, iofs.ErrNotExist) {
		return fmt.Errorf("disk-check: %s does not exist: create it on the disk the hub will use", *dir)
	} else if err != nil {
		return fmt.Errorf("disk-check: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("disk-check: %s is not a directory", *dir)
	}

	f, err := os.CreateTemp(*dir, ".presencehub-disk-check-*")
	if err != nil {
		return fmt.Errorf("disk-check: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// Set up front, as Badger sets its log's size when it opens one: the
	// flushes then carry the blocks a first write allocates, as the log's
	// do, but not a new file size each time, and the check takes no more
	// room than this, however long it runs.
	if err := f.Truncate(ringBytes); err != nil {
		return fmt.Errorf("disk-check: %w", err)
	}

	lat, elapsed, err := measureFlushes(ctx, f, ringBytes, *rate, *duration, *size)
	if err != nil {
		return fmt.Errorf("disk-check: %w", err)
	}
	if len(lat) == 0 {
		return errors.New("disk-check: stopped before the first flush")
	}
	writeDiskReport(stdout, *dir, *size, lat, elapsed)
	return nil
}

// ringBytes is the size of the file the check writes in turn: that of the
// store's write-ahead log (twice its 16 MiB memtable).
const ringBytes = 32 << 20

// measureFlushes writes size bytes to f, in turn through its first ring
// bytes, and flushes them, rate times a second for d or until ctx ends,
// and returns each write-and-flush time. A flush that overruns its slot
// delays the next ones, which then go at once, as commits queued behind a
// slow flush do.
func measureFlushes(ctx context.Context, f *os.File, ring int64, rate int, d time.Duration, size int) ([]time.Duration, time.Duration, error) {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i*7 + 1) // not zeros: no file system may skip them
	}
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	lat := make([]time.Duration, 0, n)
	tick := time.NewTimer(0)
	defer tick.Stop()
	var off int64
	start := time.Now()
	for i := range n {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			tick.Reset(wait)
			select {
			case <-ctx.Done():
				return lat, time.Since(start), nil
			case <-tick.C:
			}
		} else if ctx.Err() != nil {
			return lat, time.Since(start), nil
		}
		t := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return lat, time.Since(start), err
		}
		if off += int64(size); off+int64(size) > ring {
			off = 0
		}
		if err := flushData(f); err != nil {
			return lat, time.Since(start), err
		}
		lat = append(lat, time.Since(t))
	}
	return lat, time.Since(start), nil
}

// stallLimits are the flush times writeDiskReport counts stalls over.
var stallLimits = []time.Duration{10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond}

func writeDiskReport(w io.Writer, dir string, size int, lat []time.Duration, elapsed time.Duration) {
	sorted := slices.Clone(lat)
	slices.Sort(sorted)
	q := func(p float64) string { return ms(sorted[int(p*float64(len(sorted)-1))]) }
	var stalled time.Duration
	for _, d := range lat {
		if d > stallLimits[0] {
			stalled += d
		}
	}
	fmt.Fprintf(w, "disk-check: %d flushes of %d bytes in %s over %.1f s\n", len(lat), size, dir, elapsed.Seconds())
	fmt.Fprintf(w, "flush time: p50 %s  p90 %s  p99 %s  p99.9 %s  max %s\n", q(0.5), q(0.9), q(0.99), q(0.999), ms(sorted[len(sorted)-1]))
	fmt.Fprint(w, "stalls:")
	for i, lim := range stallLimits {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(w, "%s %d over %v", sep, countOver(sorted, lim), lim)
	}
	fmt.Fprintf(w, " (%s in flushes over %v)\n", ms(stalled), stallLimits[0])
	fmt.Fprintln(w, "Every change a durable hub commits waits for one flush: a stall delays every change made during it.")
}

// countOver counts the durations of sorted (ascending) above lim.
func countOver(sorted []time.Duration, lim time.Duration) int {
	i, _ := slices.BinarySearch(sorted, lim+1)
	return len(sorted) - i
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The server's cost is read from outside, as an operator would: memory and
// CPU from /proc/PID when -pid is given (else from the process_* metrics),
// goroutines from the hub's /metrics.

// serverSample is the server's state at one moment. A field that could not
// be read is -1.
type serverSample struct {
	RSS        int64   `json:"rss_bytes"`
	Goroutines int64   `json:"goroutines"`
	CPU        float64 `json:"cpu_seconds"` // user + system since the server started
	Heap       int64   `json:"heap_inuse_bytes"`
	Stacks     int64   `json:"stack_inuse_bytes"`
	Conns      int64   `json:"connections"` // presencehub_connections
	at         time.Time
	metrics    map[string]float64 // the scrape of /metrics it was read from; nil if none
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

type serverProbe struct {
	pid     int
	metrics *url.URL
	http    *http.Client
}

func (p *serverProbe) sample(ctx context.Context) serverSample {
	s := serverSample{RSS: -1, Goroutines: -1, CPU: -1, Heap: -1, Stacks: -1, Conns: -1, at: time.Now()}
	m := p.scrape(ctx)
	s.metrics = m
	if v, ok := m["go_goroutines"]; ok {
		s.Goroutines = int64(v)
	}
	if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
		s.Heap = int64(v)
	}
	if v, ok := m["go_memstats_stack_inuse_bytes"]; ok {
		s.Stacks = int64(v)
	}
	if v, ok := m["presencehub_connections"]; ok {
		s.Conns = int64(v)
	}
	if p.pid > 0 {
		if rss, err := procRSS(p.pid); err == nil {
			s.RSS = rss
		}
		if cpu, err := procCPU(p.pid); err == nil {
			s.CPU = cpu
		}
		return s
	}
	if v, ok := m["process_resident_memory_bytes"]; ok {
		s.RSS = int64(v)
	}
	if v, ok := m["process_cpu_seconds_total"]; ok {
		s.CPU = v
	}
	return s
}

// scrape reads the unlabelled samples of /metrics; nil if it cannot.
func (p *serverProbe) scrape(ctx context.Context) map[string]float64 {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metrics.String(), nil)
	if err != nil {
		return nil
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return nil
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads Prometheus text format, keeping samples without labels
// and summing labelled ones under their bare name (so
// presencehub_ws_rejected_total counts every reason). A labelled sample is
// also kept under its whole series name, labels as written
// (presencehub_store_commit_duration_seconds_bucket{le="0.05"}).
func parseMetrics(r io.Reader) map[string]float64 {
	out := make(map[string]float64)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		series := ""
		if i := strings.IndexByte(name, '{'); i >= 0 {
			// The value follows the closing brace; label values may hold spaces.
			j := strings.LastIndexByte(line, '}')
			if j < 0 {
				continue
			}
			series = line[:j+1]
			name, rest = name[:i], line[j+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		out[name] += v
		if series != "" {
			out[series] = v
		}
	}
	return out
}

// commitHist is the hub's histogram of store commit times: every durable
// change waits for its batch's commit, flush to disk included.
const commitHist = "presencehub_store_commit_duration_seconds"

// commitStallBounds are the bucket bounds of commitHist that commitStalls
// counts commits over, with their names in the report.
var commitStallBounds = []struct {
	le   string
	name string
}{{"0.01", "over_10ms"}, {"0.025", "over_25ms"}, {"0.05", "over_50ms"}, {"0.1", "over_100ms"}}

// commitStalls reads, between two scrapes of the hub's /metrics, how many
// store commits there were and how many took longer than 10, 25, 50 and
// 100 ms: the commits a latency tail can be laid at, as every change made
// during a slow commit waits for it (and for the next). nil when either
// scrape lacks the histogram.
func commitStalls(m0, m1 map[string]float64) fields {
	count0, ok0 := m0[commitHist+"_count"]
	count1, ok1 := m1[commitHist+"_count"]
	if !ok0 || !ok1 {
		return nil
	}
	out := fields{{"commits", int64(count1 - count0)}}
	for _, b := range commitStallBounds {
		k := commitHist + `_bucket{le="` + b.le + `"}`
		in0, ok0 := m0[k]
		in1, ok1 := m1[k]
		if !ok0 || !ok1 {
			return nil
		}
		out.add(b.name, int64((count1-count0)-(in1-in0)))
	}
	return out
}

// procRSS reads VmRSS of /proc/PID/status, in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmRSS:")); ok {
			f := bytes.Fields(v)
			if len(f) == 2 && string(f[1]) == "kB" {
				n, err := strconv.ParseInt(string(f[0]), 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// procCPU reads utime + stime of /proc/PID/stat, in seconds.
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads fields 14 and 15 (utime, stime) of a /proc/PID/stat
// line. The command name (field 2) is in parentheses and may hold spaces,
// so fields are counted after its closing parenthesis.
func parseStatCPU(b []byte) (float64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state), so field k is f[k-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields", len(f)+2)
	}
	ut, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	st, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: bad utime or stime")
	}
	return float64(ut+st) / clockTicks, nil
}

// selfCPU is the load tool's own user + system CPU time, in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return -1
	}
	return tvSec(ru.Utime) + tvSec(ru.Stime)
}

func tvSec(tv syscall.Timeval) float64 { return float64(tv.Sec) + float64(tv.Usec)/1e6 }

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

// The reliability tests (crash_test.go, fault_test.go) run the real binary,
// built from this module, as a separate process on a loopback port: a
// SIGKILL, a full disk or a SIGTERM must hit the process that production
// runs, not the test binary.

// needBinary skips in -short mode and builds ./cmd/presencehub into the
// test's temporary directory. The build cache makes every build after the
// first a link step of a second or two.
func needBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the presencehub binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "presencehub")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = "." // go test runs in the package directory: cmd/presencehub
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nobody listens on. The hub is
// restarted on the same address, so the port is picked once per test.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// hubProc is one run of `presencehub serve`.
type hubProc struct {
	t       *testing.T
	cmd     *exec.Cmd
	base    string // http://127.0.0.1:port
	started time.Time
	logPath string

	done    chan struct{} // closed when the process has exited
	waitErr error         // the exit, read after done
	exited  time.Time
}

// hubOptions are what a test changes of a run.
type hubOptions struct {
	durable bool
	drain   time.Duration
	extra   []string
}

// startHub runs the binary on addr with its data in dir and waits until it
// listens. Its log (warnings and errors) goes to a file in the test's
// temporary directory, shown when the test fails.
func startHub(t *testing.T, bin, addr, dir string, o hubOptions) *hubProc {
	t.Helper()
	if o.drain == 0 {
		o.drain = 5 * time.Second
	}
	args := []string{"serve", "-addr", addr, "-data", dir, "-secret", testSecret,
		"-durable=" + strconv.FormatBool(o.durable), "-log-level", "warn", "-drain", o.drain.String()}
	args = append(args, o.extra...)
	logf, err := os.CreateTemp(t.TempDir(), "hub-*.log")
	if err != nil {
		t.Fatal(err)
	}
	p := &hubProc{t: t, cmd: exec.Command(bin, args...), base: "http://" + addr,
		logPath: logf.Name(), done: make(chan struct{})}
	out := &lockedBuffer{}
	p.cmd.Stdout = out
	p.cmd.Stderr = logf
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	go func() { // ends when the process exits
		p.waitErr = p.cmd.Wait()
		p.exited = time.Now()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if !t.Failed() {
			return
		}
		if st, err := os.Stat(p.logPath); err == nil && st.Size() == 0 {
			return
		}
		if c := p.crash(); c != "" {
			t.Logf("hub (pid %d) crashed; %s has it all:\n%s", p.pid(), p.logPath, c)
		} else {
			t.Logf("hub log %s (pid %d):\n%s", p.logPath, p.pid(), p.logTail(3000))
		}
	})
	deadline := time.After(20 * time.Second)
	for !strings.Contains(out.String(), "listening on") {
		select {
		case <-p.done:
			t.Fatalf("hub exited before listening: %v\n%s", p.waitErr, p.logTail(4000))
		case <-deadline:
			t.Fatalf("hub did not listen within 20s\n%s", p.logTail(4000))
		case <-time.After(10 * time.Millisecond):
		}
	}
	return p
}

func (p *hubProc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the process is still running.
func (p *hubProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the exit. It is idempotent.
func (p *hubProc) kill() {
	if p.alive() {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// term sends SIGTERM and waits up to limit for the exit; it returns how
// long the process took and whether it exited in time (it is killed if not).
func (p *hubProc) term(limit time.Duration) (took time.Duration, inTime bool) {
	sent := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.exited.Sub(sent), true
	case <-time.After(limit):
		p.kill()
		return time.Since(sent), false
	}
}

// exitStatus describes how the process ended.
func (p *hubProc) exitStatus() string {
	<-p.done
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if p.waitErr != nil {
		return p.waitErr.Error()
	}
	return "exit status 0"
}

func (p *hubProc) logTail(n int) string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// crash is the start of a Go crash report in the log (the fatal error or
// panic, the signal, and the failing goroutine's stack), or "" if the
// process did not crash.
func (p *hubProc) crash() string {
	b, _ := os.ReadFile(p.logPath)
	lines := strings.Split(string(b), "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "panic: ") || strings.HasPrefix(line, "fatal error: ") || strings.HasPrefix(line, "unexpected fault address") {
			var out []string
			for _, l := range lines[i:min(len(lines), i+40)] {
				if l == "" && len(out) > 4 {
					break // the end of the failing goroutine's stack
				}
				out = append(out, l)
			}
			return strings.Join(out, "\n")
		}
	}
	return ""
}

// crashSummary is a crash in one line: the fatal error, the signal and the
// first frame outside the runtime.
func (p *hubProc) crashSummary() string {
	c := p.crash()
	if c == "" {
		return ""
	}
	var parts []string
	lines := strings.Split(c, "\n")
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "fatal error: "), strings.HasPrefix(l, "panic: "), strings.HasPrefix(l, "[signal "):
			parts = append(parts, l)
		case strings.Contains(l, "(") && !strings.HasPrefix(l, "\t") && !strings.HasPrefix(l, "runtime.") &&
			!strings.HasPrefix(l, "goroutine ") && !strings.HasPrefix(l, "unexpected fault"):
			where := ""
			if i+1 < len(lines) {
				where = strings.Fields(strings.TrimSpace(lines[i+1]))[0]
			}
			fn, _, _ := strings.Cut(l, "(0x")
			fn, _, _ = strings.Cut(fn, "(_,")
			return strings.Join(parts, " ") + " in " + fn + " at " + where
		}
	}
	return strings.Join(parts, " ")
}

// rssKiB reads the process's resident set size from /proc.
func (p *hubProc) rssKiB() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", p.pid())
}

// mint signs a token for the test secret.
func mintFor(t *testing.T, ws, sub string, role queues.Role) string {
	t.Helper()
	tok, err := hub.Mint([]byte(testSecret), hub.Identity{Workspace: ws, Agent: sub, Name: "N " + sub, Role: role}, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newTransport is an HTTP transport whose idle connections are closed when
// the test ends, so goleak finds none of their goroutines.
func newTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 5 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// api calls the HTTP API.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(t *testing.T, base string) *api {
	return &api{base: base, hc: &http.Client{Transport: newTransport(t), Timeout: 10 * time.Second}}
}

// apiResult is an answer: its status, raw body and error code if any.
type apiResult struct {
	status int
	body   []byte
	code   string
}

// do sends one request; err is a transport error (no answer).
func (a *api) do(ctx context.Context, method, path, token string, body any) (apiResult, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiResult{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return apiResult{}, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return apiResult{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiResult{}, err
	}
	r := apiResult{status: resp.StatusCode, body: b}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		json.Unmarshal(b, &e)
		r.code = e.Error.Code
	}
	return r, nil
}

// must sends a request that has to succeed, waiting out rate limits and a
// hub that is (re)starting, within ten seconds.
func (a *api) must(t *testing.T, method, path, token string, body, into any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		r, err := a.do(ctx, method, path, token, body)
		if err == nil && r.status == http.StatusOK {
			if into != nil {
				if err := json.Unmarshal(r.body, into); err != nil {
					t.Fatalf("%s %s: decode %.300s: %v", method, path, r.body, err)
				}
			}
			return
		}
		retry := err != nil || r.status == http.StatusTooManyRequests || r.status == http.StatusServiceUnavailable
		if !retry || ctx.Err() != nil {
			t.Fatalf("%s %s: got %d %.300s (err %v), want 200", method, path, r.status, r.body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// convDetail is GET /api/v1/conversations/{id}.
type convDetail struct {
	Conversation queues.Conversation `json:"conversation"`
	History      []queues.AuditEntry `json:"history"`
	Messages     []queues.Message    `json:"messages"`
}

// inboundAnswer is POST /api/v1/conversations/{id}/inbound.
type inboundAnswer struct {
	Conversation queues.Conversation `json:"conversation"`
	Duplicate    bool                `json:"duplicate"`
	Seq          uint64              `json:"seq"`
}

// metric reads one unlabelled metric from the hub's /metrics. Each scrape
// uses a connection of its own, closed after it, so the scrapes themselves
// leave no server goroutine behind.
func metric(base, name string) (float64, error) {
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := hc.Get(base + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no %s in /metrics", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// goroutines reads go_goroutines from the hub's /metrics.
func goroutines(base string) (int, error) {
	f, err := metric(base, "go_goroutines")
	return int(f), err
}

// pollUntil polls cond every interval until it holds or limit passes.
func pollUntil(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// problems collects what goroutines find wrong, for the test goroutine to
// report (no t.Fatal or t.Error from a spawned goroutine). It keeps the
// first few of each kind and counts the rest.
type problems struct {
	mu     sync.Mutex
	counts map[string]int
	first  map[string][]string
	order  []string
}

func (p *problems) add(kind, format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.counts == nil {
		p.counts, p.first = map[string]int{}, map[string][]string{}
	}
	if p.counts[kind] == 0 {
		p.order = append(p.order, kind)
	}
	p.counts[kind]++
	if len(p.first[kind]) < 5 {
		p.first[kind] = append(p.first[kind], fmt.Sprintf(format, args...))
	}
}

func (p *problems) count(kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[kind]
}

// report fails t once per kind of problem, with its first examples.
func (p *problems) report(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, k := range p.order {
		t.Errorf("%s: %d time(s), e.g.:\n  %s", k, p.counts[k], strings.Join(p.first[k], "\n  "))
	}
}

// goVersion is for the reports: which toolchain ran the test.
func goVersion() string { return runtime.Version() }

package web

// The harness of the browser tests (browser_test.go): the real server
// binary with its demo workspace and the HTTP API, one headless Chromium,
// and bounded waits. browser_console_test.go drives a person's console.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

const (
	// browserSecret signs the tests' tokens; the server is started with it.
	browserSecret = "browser-test-secret-0123456789"
	// stepTimeout bounds every wait and every browser action: generous, so
	// that a loaded two-core machine under -race is slow but not failing.
	stepTimeout = 10 * time.Second
	// startTimeout bounds starting the server and the browser.
	startTimeout = 30 * time.Second
)

// The people of the demo workspace (cmd/presencehub/demo.go) the tests sign
// in as; tokens carry the same names, so the consoles show them.
var demoPeople = map[string]hub.Identity{
	"ann": {Workspace: "demo", Agent: "ann", Name: "Ann Admin", Role: queues.RoleAdmin},
	"al":  {Workspace: "demo", Agent: "al", Name: "Al Rivera", Role: queues.RoleAgent},
	"bea": {Workspace: "demo", Agent: "bea", Name: "Bea Chen", Role: queues.RoleAgent},
	"cy":  {Workspace: "demo", Agent: "cy", Name: "Cy Okafor", Role: queues.RoleAgent},
}

// moduleRoot is the directory of go.mod: the tests run in web/.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// buildServer builds ./cmd/presencehub into dir and returns the binary.
func buildServer(t *testing.T, dir string) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the server with")
	}
	bin := filepath.Join(dir, "presencehub")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/presencehub")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/presencehub: %v\n%s", err, out)
	}
	return bin
}

// hubServer is one running `presencehub serve -demo`.
type hubServer struct {
	base string // http://127.0.0.1:PORT
	http *http.Client
}

// startHub runs bin with a fresh data directory and a demo workspace, and
// waits until it is ready. The server is stopped with SIGTERM, and awaited,
// when the test ends.
func startHub(t *testing.T, bin string) *hubServer {
	t.Helper()
	// Port 0: the kernel picks a free port and the server prints it, so no
	// other process can take it between a probe and the listen.
	cmd := exec.Command(bin, "serve", "-demo", "-addr", "127.0.0.1:0",
		"-data", filepath.Join(t.TempDir(), "data"), "-secret", browserSecret,
		"-durable=false", "-log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	done := make(chan error, 1)
	// Reads the server's stdout until it closes, which is when the process
	// exits; then reaps it.
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "presencehub listening on "); ok {
				select {
				case addr <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	tr := &http.Transport{}
	s := &hubServer{http: &http.Client{Timeout: stepTimeout, Transport: tr}}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server exited with %v after SIGTERM; its log:\n%s", err, stderr.String())
			}
		case <-time.After(startTimeout):
			cmd.Process.Kill()
			<-done
			t.Errorf("server did not stop within %v of SIGTERM", startTimeout)
		}
	})
	select {
	case s.base = <-addr:
	case err := <-done:
		t.Fatalf("server exited before listening: %v\n%s", err, stderr.String())
	case <-time.After(startTimeout):
		t.Fatalf("server did not print its address within %v", startTimeout)
	}
	eventually(t, startTimeout, "the server answers /readyz with 200", func() error {
		res, err := s.http.Get(s.base + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("got %d, want 200", res.StatusCode)
		}
		return nil
	})
	return s
}

// token mints a token for one of demoPeople.
func (s *hubServer) token(t *testing.T, who string) string {
	t.Helper()
	id, ok := demoPeople[who]
	if !ok {
		t.Fatalf("no demo person %q", who)
	}
	tok, err := hub.Mint([]byte(browserSecret), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// api calls the HTTP API as who and decodes the answer into out (when not
// nil). Anything but a 200 fails the test.
func (s *hubServer) api(t *testing.T, who, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, s.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token(t, who))
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := s.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s as %s: got %d %s, want 200", method, path, who, res.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
}

// apiConv is a conversation as the HTTP API returns it.
type apiConv struct {
	ID       string `json:"id"`
	Queue    string `json:"queue"`
	Owner    string `json:"owner"`
	Customer string `json:"customer"`
	Version  int64  `json:"version"`
}

// apiPage is one page of GET /api/v1/conversations.
type apiPage struct {
	Items  []apiConv `json:"items"`
	Next   string    `json:"next"`
	Counts struct {
		Total    int `json:"total"`
		Matching int `json:"matching"`
	} `json:"counts"`
}

// conversation reads one conversation through the API.
func (s *hubServer) conversation(t *testing.T, id string) apiConv {
	t.Helper()
	var res struct {
		Conversation apiConv `json:"conversation"`
	}
	s.api(t, "ann", http.MethodGet, "/api/v1/conversations/"+id, nil, &res)
	return res.Conversation
}

// assign sets (agent != "") or clears the owner of conversation id through
// the API, as who, against the version it has now.
func (s *hubServer) assign(t *testing.T, who, id, agent string) {
	t.Helper()
	v := s.conversation(t, id).Version
	if agent == "" {
		s.api(t, who, http.MethodPost, "/api/v1/conversations/"+id+"/unassign", map[string]any{"version": v}, nil)
		return
	}
	s.api(t, who, http.MethodPost, "/api/v1/conversations/"+id+"/assign", map[string]any{"agent": agent, "version": v}, nil)
}

// page is the first page of a queue through the HTTP API, as who.
func (s *hubServer) page(t *testing.T, who, queue, filter string, agents ...string) apiPage {
	t.Helper()
	q := url.Values{"queue": {queue}, "filter": {filter}, "limit": {"500"}}
	if len(agents) > 0 {
		q.Set("agents", strings.Join(agents, ","))
	}
	var p apiPage
	s.api(t, who, http.MethodGet, "/api/v1/conversations?"+q.Encode(), nil, &p)
	if p.Next != "" {
		t.Fatalf("%s filtered by %s: more than one page", queue, filter)
	}
	return p
}

// ids are the ids of a queue's conversations through the HTTP API.
func (s *hubServer) ids(t *testing.T, who, queue, filter string, agents ...string) []string {
	t.Helper()
	var ids []string
	for _, it := range s.page(t, who, queue, filter, agents...).Items {
		ids = append(ids, it.ID)
	}
	return ids
}

// apiSettings are the workspace settings the tests look at.
type apiSettings struct {
	RemoveOwnership bool `json:"remove_ownership"`
	OfflineGrace    int  `json:"offline_grace"`
}

func (s *hubServer) settings(t *testing.T) apiSettings {
	t.Helper()
	var res struct {
		Settings apiSettings `json:"settings"`
	}
	s.api(t, "al", http.MethodGet, "/api/v1/settings", nil, &res)
	return res.Settings
}

// findChromium returns the path of Debian's chromium. Without one the
// browser tests fail in CI (where `make test` installs it) and skip
// elsewhere.
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "chromium is not installed: `make test-deps` (or apt-get install chromium) installs it"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser is one headless Chromium process.
type browser struct {
	ctx context.Context // the browser's first tab; people get tabs of their own
}

// startBrowser starts Chromium with the flags the project's tests use, in a
// fresh profile, and stops it (and waits for it) when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := findChromium(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Cancelling closes the browser and waits for the process to exit.
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := firstRun(ctx, cancel, startTimeout); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	return &browser{ctx: ctx}
}

// firstRun runs nothing on ctx, which starts its browser or opens its tab.
// The first Run binds what it starts to the context it is given, so it
// cannot have a deadline of its own: instead, cancel ends ctx if it takes
// longer than timeout.
func firstRun(ctx context.Context, cancel context.CancelFunc, timeout time.Duration) error {
	timer := time.AfterFunc(timeout, cancel)
	err := chromedp.Do(ctx)
	if !timer.Stop() {
		return fmt.Errorf("no answer within %v: %w", timeout, err)
	}
	return err
}

// artifactDir is where screenshots go: $PRESENCEHUB_ARTIFACTS, else
// .artifacts/ at the module root (git-ignored).
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PRESENCEHUB_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(moduleRoot(t), ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// eventually calls check until it returns nil, every 50 ms for at most
// timeout, and fails the test with check's last error otherwise.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		<-tick.C
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// lockedBuffer collects a process's stderr for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

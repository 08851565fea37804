package web

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, srv *httptest.Server, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestServesFiles(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	tests := []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `data-testid="app"`},
		{"/index.html", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/client.js", "text/javascript; charset=utf-8", "export class Client"},
		{"/app.js", "text/javascript; charset=utf-8", "import"},
		{"/style.css", "text/css; charset=utf-8", ".conv-row"},
		{"/favicon.svg", "image/svg+xml", "<svg"},
	}
	for _, tt := range tests {
		res, body := get(t, srv, tt.path)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: got status %d, want 200", tt.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET %s: got Content-Type %q, want %q", tt.path, got, tt.contentType)
		}
		if !strings.Contains(body, tt.contains) {
			t.Errorf("GET %s: body lacks %q", tt.path, tt.contains)
		}
		for _, h := range []string{"ETag", "Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy"} {
			if res.Header.Get(h) == "" {
				t.Errorf("GET %s: no %s header", tt.path, h)
			}
		}
	}
}

func TestNotFoundAndMethods(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	for _, p := range []string{"/nope.js", "/static/index.html", "/../go.mod", "/web.go"} {
		if res, _ := get(t, srv, p); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: got %d, want 404", p, res.StatusCode)
		}
	}
	res, err := srv.Client().Post(srv.URL+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: got %d Allow %q, want 405 and \"GET, HEAD\"", res.StatusCode, res.Header.Get("Allow"))
	}
}

func TestRevalidation(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	res, _ := get(t, srv, "/client.js")
	etag := res.Header.Get("ETag")
	if res.Header.Get("Cache-Control") != "no-cache" {
		t.Errorf("Cache-Control: got %q, want no-cache", res.Header.Get("Cache-Control"))
	}
	res, body := get(t, srv, "/client.js", "If-None-Match", etag)
	if res.StatusCode != http.StatusNotModified || body != "" {
		t.Errorf("conditional GET: got %d with %d bytes, want 304 and none", res.StatusCode, len(body))
	}
}

func TestCSPHost(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "hub.example:8080"
	if got := csp(req); !strings.Contains(got, "connect-src 'self' ws://hub.example:8080 wss://hub.example:8080;") {
		t.Errorf("csp: got %q, want the host's ws and wss in connect-src", got)
	}
	req.Host = "evil; script-src *"
	if got := csp(req); !strings.Contains(got, "connect-src 'self';") || strings.Contains(got, "evil") {
		t.Errorf("csp with a forged host: got %q, want connect-src 'self' only", got)
	}
}

var (
	scriptSrc = regexp.MustCompile(`<script[^>]*type="module"[^>]*src="([^"]+)"`)
	importRe  = regexp.MustCompile(`(?m)^\s*(?:import|export)\s+(?:[^'"]*?\sfrom\s+)?["']([^"']+)["']`)
)

// Every module index.html loads, and every module those import, exists in
// the embedded files and is served as JavaScript: a missing file would be a
// blank console with no build step to catch it.
func TestModuleGraph(t *testing.T) {
	index, err := fs.ReadFile(static, "static/index.html")
	if err != nil {
		t.Fatal(err)
	}
	var queue []string
	for _, m := range scriptSrc.FindAllStringSubmatch(string(index), -1) {
		queue = append(queue, m[1])
	}
	if len(queue) == 0 {
		t.Fatal("index.html loads no module")
	}
	seen := map[string]bool{}
	for len(queue) > 0 {
		name := strings.TrimPrefix(queue[0], "./")
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		src, err := fs.ReadFile(static, "static/"+name)
		if err != nil {
			t.Errorf("module %s: %v", name, err)
			continue
		}
		if a, ok := assets["/"+name]; !ok || a.contentType != "text/javascript; charset=utf-8" {
			t.Errorf("module %s: not served as JavaScript", name)
		}
		for _, m := range importRe.FindAllStringSubmatch(string(src), -1) {
			spec := m[1]
			if !strings.HasPrefix(spec, "./") {
				t.Errorf("module %s imports %q: only relative imports work without a build step", name, spec)
				continue
			}
			queue = append(queue, spec)
		}
	}
	for _, want := range []string{"app.js", "client.js", "dom.js", "format.js"} {
		if !seen[want] {
			t.Errorf("module graph lacks %s", want)
		}
	}
	// Every module shipped is used: a stray file is dead code nobody runs.
	entries, _ := fs.ReadDir(static, "static")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".js") && !seen[e.Name()] {
			t.Errorf("static/%s is not imported by anything", e.Name())
		}
	}
}

// The hooks browser tests rely on are documented at the top of index.html
// and exist in the page or its modules.
func TestTestIDs(t *testing.T) {
	index, _ := fs.ReadFile(static, "static/index.html")
	doc, _, ok := strings.Cut(string(index), "<html")
	if !ok {
		t.Fatal("index.html: no <html>")
	}
	var code strings.Builder
	code.Write(index[len(doc):])
	entries, _ := fs.ReadDir(static, "static")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".js") {
			b, _ := fs.ReadFile(static, "static/"+e.Name())
			code.Write(b)
		}
	}
	for _, id := range []string{
		"queue-new", "queue-pending", "conv-row", "owner-label", "agent-dot", "owner-select",
		"owner-option", "filter-select", "notif-bell", "notif-count", "settings-remove-ownership",
		"banner-disconnected", "status-switch", "history", "login", "logout", "settings-panel",
		"settings-offline-grace", "settings-error", "notif-panel", "notif-summary", "conflict-notice",
		"reply-text", "reply-send", "action-resolve", "action-pending", "boomerang-preset",
	} {
		if !strings.Contains(doc, id) {
			t.Errorf("data-testid %q is not documented at the top of index.html", id)
		}
		// Set as data-testid="id" in the page or as a "id" string in a module.
		if !strings.Contains(code.String(), `"`+id+`"`) {
			t.Errorf("data-testid %q is documented but never set", id)
		}
	}
}

func TestClientIsDocumented(t *testing.T) {
	src, _ := fs.ReadFile(static, "static/client.js")
	if !strings.HasPrefix(string(src), "/**") || !strings.Contains(string(src), "Usage:") {
		t.Error("client.js does not open with its JSDoc usage comment")
	}
}

// The client's protocol logic (frames, replies, views, resume, backoff) is
// tested in JavaScript against a scripted socket; node runs it when it is
// installed.
func TestClientJS(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; skipping testdata/client_test.mjs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		t.Skipf("node --version: %v", err)
	}
	// node --test with the test API used here needs node 20 or later.
	major, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(strings.TrimSpace(string(v)), ".", 2)[0], "v"))
	if major < 20 {
		t.Skipf("node %s is older than 20", strings.TrimSpace(string(v)))
	}
	out, err := exec.CommandContext(ctx, node, "--test", "testdata/client_test.mjs").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test testdata/client_test.mjs: %v\n%s", err, out)
	}
}

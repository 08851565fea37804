package metrics_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/presencehub/presencehub/hub"
	"github.com/presencehub/presencehub/queues"
)

const scrapeSecret = "scrape-test-secret-0123456789"

// TestScrapeRunningServer builds the real binary, runs it on a loopback port
// with a demo workspace, connects one agent over the WebSocket and scrapes
// /metrics: every presencehub metric is there, the gauges follow the
// connection, and the output passes promlint.
func TestScrapeRunningServer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server")
	}
	if _, err := os.Stat(filepath.Join("..", "cmd", "presencehub", "main.go")); err != nil {
		t.Skip("cmd/presencehub is not in this tree")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool to build the server with")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "presencehub")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/presencehub")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/presencehub: %v\n%s", err, out)
	}

	base := startServer(t, bin, filepath.Join(dir, "data"))
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

	eventually(t, 20*time.Second, func() error {
		res, err := client.Get(base + "/readyz")
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d", res.StatusCode)
		}
		return nil
	})

	token, err := hub.Mint([]byte(scrapeSecret), hub.Identity{
		Workspace: "demo", Agent: "scraper", Name: "Scraper", Role: queues.RoleAgent,
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wsURL := "ws" + strings.TrimPrefix(base, "http") + "/ws?access_token=" + token
	conn, _, err := websocket.Dial(ctx, wsURL, nil)
	if err != nil {
		t.Fatalf("dial /ws: %v", err)
	}
	if _, _, err := conn.Read(ctx); err != nil { // hello
		t.Fatalf("read hello: %v", err)
	}

	eventually(t, 10*time.Second, func() error {
		body := scrape(t, client, base)
		for _, want := range []string{
			"presencehub_connections 1",
			`presencehub_agents{status="online"}`,
			`presencehub_conversations{owned="false",queue="new"}`,
			`presencehub_ownership_changes_total{reason="logout"}`,
			"presencehub_ownership_removal_delay_seconds_bucket",
			`presencehub_presence_transitions_total{reason="connected",to="online"}`,
			"presencehub_messages_sent_total",
			"presencehub_broadcast_duration_seconds_bucket",
			"presencehub_store_commit_duration_seconds_bucket",
			"presencehub_store_batch_requests_bucket",
			"presencehub_slow_consumer_disconnects_total 0",
			`presencehub_ws_rejected_total{reason="bad_token"}`,
			"go_goroutines",
			"process_resident_memory_bytes",
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("scrape lacks %q", want)
			}
		}
		if strings.Contains(body, `presencehub_presence_transitions_total{reason="connected",to="online"} 0`) {
			return fmt.Errorf("the agent's connect is not counted yet")
		}
		if strings.Contains(body, "presencehub_store_commit_duration_seconds_count 0") {
			return fmt.Errorf("no commit observed, though the agent's connect was committed")
		}
		return nil
	})

	problems, err := promlint.New(strings.NewReader(scrape(t, client, base))).Lint()
	if err != nil {
		t.Fatalf("promlint: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	// A refused token is counted under its reason, never its content.
	res, err := client.Get(base + "/ws?access_token=not-a-jwt")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	eventually(t, 5*time.Second, func() error {
		if body := scrape(t, client, base); strings.Contains(body, `presencehub_ws_rejected_total{reason="bad_token"} 0`) {
			return fmt.Errorf("bad token not counted")
		}
		return nil
	})

	// The 2-minute promise made visible: with Remove Ownership on, the
	// scraper owns a New conversation and closes its only socket; after the
	// grace its ownership is removed, counted under "logout", and the
	// removal delay lands in the histogram.
	admin, err := hub.Mint([]byte(scrapeSecret), hub.Identity{
		Workspace: "demo", Agent: "ann", Name: "Ann Admin", Role: queues.RoleAdmin,
	}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	before := scrape(t, client, base)
	api(t, client, http.MethodPatch, base+"/api/v1/settings", admin, `{"remove_ownership":true,"offline_grace":1}`)
	var got struct {
		Conversation queues.Conversation `json:"conversation"`
	}
	decodeBody(t, api(t, client, http.MethodGet, base+"/api/v1/conversations/c1", admin, ""), &got)
	api(t, client, http.MethodPost, base+"/api/v1/conversations/c1/assign", admin,
		fmt.Sprintf(`{"agent":"scraper","version":%d}`, got.Conversation.Version))
	eventually(t, 10*time.Second, func() error {
		if n := value(scrape(t, client, base), `presencehub_ownership_changes_total{reason="manual_assign"}`); n <= value(before, `presencehub_ownership_changes_total{reason="manual_assign"}`) {
			return fmt.Errorf("manual_assign not counted")
		}
		return nil
	})

	conn.Close(websocket.StatusNormalClosure, "done")
	eventually(t, 10*time.Second, func() error {
		if body := scrape(t, client, base); !strings.Contains(body, "presencehub_connections 0") {
			return fmt.Errorf("connection still counted")
		}
		return nil
	})
	eventually(t, 15*time.Second, func() error {
		body := scrape(t, client, base)
		if value(body, `presencehub_ownership_changes_total{reason="logout"}`) < 1 {
			return fmt.Errorf("the logout removal is not counted")
		}
		if value(body, "presencehub_ownership_removal_delay_seconds_count") < 1 {
			return fmt.Errorf("the removal delay is not observed")
		}
		if value(body, `presencehub_presence_transitions_total{reason="grace_expired",to="offline"}`) < 1 {
			return fmt.Errorf("the grace expiry is not counted")
		}
		return nil
	})
	if d := value(scrape(t, client, base), "presencehub_ownership_removal_delay_seconds_sum"); d < 0.5 || d > 120 {
		t.Errorf("removal delay: got %v s, want about the 1 s grace and within the 2-minute promise", d)
	}
}

// api makes an authenticated API request and returns its body, failing the
// test on anything but 200.
func api(t *testing.T, client *http.Client, method, url, token, body string) []byte {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: got %d %s, want 200", method, url, res.StatusCode, b)
	}
	return b
}

func decodeBody(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
}

// value is the sample of the exposition line that starts with series, 0
// when there is none.
func value(body, series string) float64 {
	for line := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// startServer runs bin on a free loopback port and returns its base URL.
// The server is stopped with SIGINT (as Ctrl-C would) when the test ends.
func startServer(t *testing.T, bin, data string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-demo", "-addr", "127.0.0.1:0", "-data", data,
		"-secret", scrapeSecret, "-durable=false", "-log-level", "warn")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	addr := make(chan string, 1)
	// Reads the server's stdout until it closes, which is when the process
	// exits.
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "presencehub listening on "); ok {
				addr <- strings.TrimSpace(u)
			}
		}
		io.Copy(io.Discard, stdout)
		done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("server did not stop within 20 s of SIGINT")
		}
	})
	select {
	case u := <-addr:
		return u
	case err := <-done:
		t.Fatalf("server exited before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not print its address within 30 s")
	}
	return ""
}

func scrape(t *testing.T, client *http.Client, base string) string {
	t.Helper()
	res, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: got %d, want 200", res.StatusCode)
	}
	return string(body)
}

// eventually retries f until it succeeds or the time is up.
func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

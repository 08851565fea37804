package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// durableHub is a loopback server that answers a durable client's changes
// as the hub does: the conversation's new version in the reply, after an
// event packed into the same frame. It checks every request against the
// documented shape and records them.
func durableHub(t *testing.T, silent bool) (*httptest.Server, *requestLog) {
	t.Helper()
	reqs := new(requestLog)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := r.Context()
		version := 5.0
		for {
			_, b, err := c.Read(ctx)
			if err != nil {
				return
			}
			var req map[string]any
			if err := json.Unmarshal(b, &req); err != nil {
				t.Errorf("request %q is not JSON: %v", b, err)
				return
			}
			reqs.add(req)
			if silent {
				continue
			}
			if req["version"] != version {
				c.Write(ctx, websocket.MessageText, fmt.Appendf(nil, `{"type":"reply","id":%v,"ok":false,"error":{"code":"conflict","message":"stale"}}`, req["id"]))
				continue
			}
			version++
			owner := ""
			if req["op"] == "assign" {
				owner = req["agent"].(string)
			}
			c.Write(ctx, websocket.MessageText, fmt.Appendf(nil,
				`{"type":"event","seq":%v,"kind":"conversation","conv":{"id":"c3","version":%v}}`+"\n"+
					`{"type":"reply","id":%v,"ok":true,"result":{"conv":{"id":"c3","owner":%q,"version":%v},"changed":true,"seq":%v}}`,
				version, version, req["id"], owner, version, version))
		}
	}))
	t.Cleanup(srv.Close)
	return srv, reqs
}

// requestLog is what a test server received, in order.
type requestLog struct {
	mu   sync.Mutex
	reqs []map[string]any
}

func (l *requestLog) add(req map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, req)
}

func (l *requestLog) all() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.reqs)
}

// TestDurableClientAlternatesAndFollowsVersions: the client's hand-built
// requests are the documented JSON, assign and unassign alternate, and
// each carries the version the last reply gave.
func TestDurableClientAlternatesAndFollowsVersions(t *testing.T) {
	srv, reqs := durableHub(t, false)
	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	lat := newHist()
	var acked atomic.Int64
	var fails []string
	err = durableClient(ctx, c, 3, 5, time.Now().Add(300*time.Millisecond), 0, lat, &acked, func(code string) { fails = append(fails, code) })
	if err != nil {
		t.Fatal(err)
	}
	if len(fails) > 0 {
		t.Fatalf("error replies: %v", fails)
	}
	n := int(acked.Load())
	if n < 2 {
		t.Fatalf("%d changes acknowledged in 300ms", n)
	}
	got := reqs.all()
	if len(got) != n {
		t.Fatalf("%d requests sent for %d acknowledged", len(got), n)
	}
	for i, req := range got {
		want := map[string]any{"id": float64(10 + i), "op": "assign", "conv": "c3", "agent": "d3", "version": float64(5 + i)}
		if i%2 == 1 {
			want["op"] = "unassign"
			delete(want, "agent")
		}
		if fmt.Sprint(req) != fmt.Sprint(want) {
			t.Fatalf("request %d = %v, want %v", i, req, want)
		}
	}
}

// TestDurableClientEndsWhenItsContextDoes: a hub that never answers does
// not hold the client past its context, and the error says why.
func TestDurableClientEndsWhenItsContextDoes(t *testing.T) {
	srv, reqs := durableHub(t, true)
	c, _, err := websocket.Dial(context.Background(), srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithCancel(context.Background())
	go func() { // ends once it has cancelled ctx
		for end := time.Now().Add(10 * time.Second); len(reqs.all()) == 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	done := make(chan error, 1)
	go func() { // ends when durableClient returns
		var acked atomic.Int64
		done <- durableClient(ctx, c, 3, 5, time.Now().Add(time.Minute), 0, newHist(), &acked, func(string) {})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) {
			t.Fatalf("durableClient returned %v, want an error naming the cancelled context", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("durableClient still waiting 10s after its context ended")
	}
}

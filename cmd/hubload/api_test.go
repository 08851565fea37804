package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
)

// TestAPISafeRequestsSurviveAClosedKeptAliveConnection closes every
// connection at its second request, after reading it and before answering,
// as a hub closing a kept-alive connection looks to a client that had
// just picked it. A safe request (a change conditional on a version) is
// sent again on a new connection; one that is not safe fails.
func TestAPISafeRequestsSurviveAClosedKeptAliveConnection(t *testing.T) {
	var mu sync.Mutex
	perConn := map[string]int{}
	received := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		mu.Lock()
		perConn[r.RemoteAddr]++
		n := perConn[r.RemoteAddr]
		received++
		mu.Unlock()
		if n == 2 {
			c, _, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			c.Close()
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"conversation":{"id":"c1","owner":"a","version":2},"seq":3}`)
	}))
	defer srv.Close()
	base, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	api := &apiClient{base: base, http: srv.Client()}
	ctx := context.Background()

	if _, err := api.assign(ctx, "tok", "c1", "a", 1); err != nil {
		t.Fatalf("first change: %v", err)
	}
	res, err := api.assign(ctx, "tok", "c1", "", 2) // its connection closes under it
	if err != nil {
		t.Fatalf("second change, on a connection closed under it: %v", err)
	}
	if res.Conversation.Version != 2 || res.Seq != 3 {
		t.Errorf("second change answered %+v", res)
	}
	mu.Lock()
	got := received
	mu.Unlock()
	if got != 3 {
		t.Errorf("the server received %d requests, want 3 (the second sent again)", got)
	}

	// The connection of the retry is at its second request now: a
	// settings patch is not marked safe, so its failure is the caller's.
	if err := api.patchSettings(ctx, "tok", map[string]any{"offline_grace": 2}); err == nil {
		t.Error("a request not marked safe was sent again")
	}
}

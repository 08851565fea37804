package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// apiClient calls the hub's HTTP API (docs/http-api.md) with a bearer token.
type apiClient struct {
	base *url.URL
	http *http.Client
}

// apiConv is the part of a conversation the driver reads.
type apiConv struct {
	ID      string `json:"id"`
	Queue   string `json:"queue"`
	Owner   string `json:"owner"`
	Version uint64 `json:"version"`
}

// apiConvResult is the answer of every conversation change.
type apiConvResult struct {
	Conversation apiConv `json:"conversation"`
	Seq          uint64  `json:"seq"`
}

// apiError is an error answer: {"error":{"code","message",...}}.
type apiError struct {
	Status         int     `json:"-"`
	Code           string  `json:"code"`
	Message        string  `json:"message"`
	CurrentVersion *uint64 `json:"current_version"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// do sends one request and decodes a 200 answer into out (when not nil).
//
// A safe request is one that cannot take effect twice: an inbound with its
// message_id, a change conditional on a version. The transport sends a safe
// request again when a kept-alive connection it picked turns out to have
// been closed under it, before any answer. That happens under load: the
// transport keeps the spare connections it dialed while requests queued,
// the hub closes a connection that sent no request within 10 s (as
// net/http does, docs/http-api.md), and the transport can pick one just as
// it closes.
func (a *apiClient) do(ctx context.Context, method, path, token string, safe bool, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base.JoinPath(path).String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if safe {
		// Marks the request as safe to send again without sending the
		// header (net/http's Transport).
		req.Header["Idempotency-Key"] = []string{}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error apiError `json:"error"`
		}
		if json.Unmarshal(b, &e) != nil || e.Error.Code == "" {
			e.Error = apiError{Code: "?", Message: string(bytes.TrimSpace(b))}
		}
		e.Error.Status = resp.StatusCode
		return fmt.Errorf("%s %s: %w", method, path, &e.Error)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: answer: %w", method, path, err)
		}
	}
	return nil
}

// inbound creates (or adds a message to) a conversation, as a helpdesk
// backend does with a service token.
func (a *apiClient) inbound(ctx context.Context, token, conv, msgID string) (apiConvResult, error) {
	var res apiConvResult
	err := a.do(ctx, http.MethodPost, "/api/v1/conversations/"+url.PathEscape(conv)+"/inbound", token, true,
		map[string]string{
			"message_id": msgID,
			"channel":    "email",
			"customer":   "Customer " + conv,
			"subject":    "load test",
			"text":       "hello from the load tool",
		}, &res)
	return res, err
}

// assign makes agent the owner of conv, against the version last seen;
// agent "" unassigns.
func (a *apiClient) assign(ctx context.Context, token, conv, agent string, version uint64) (apiConvResult, error) {
	var res apiConvResult
	path := "/api/v1/conversations/" + url.PathEscape(conv)
	var body any
	if agent == "" {
		path += "/unassign"
		body = map[string]uint64{"version": version}
	} else {
		path += "/assign"
		body = struct {
			Agent   string `json:"agent"`
			Version uint64 `json:"version"`
		}{agent, version}
	}
	err := a.do(ctx, http.MethodPost, path, token, true, body, &res)
	return res, err
}

// patchSettings changes workspace settings (an admin token).
func (a *apiClient) patchSettings(ctx context.Context, token string, patch map[string]any) error {
	return a.do(ctx, http.MethodPatch, "/api/v1/settings", token, false, patch, nil)
}

// touch makes the token's agent exist in its workspace: an agent exists from
// their first request (docs/http-api.md), and only an existing agent can be
// assigned conversations.
func (a *apiClient) touch(ctx context.Context, token string) error {
	return a.do(ctx, http.MethodGet, "/api/v1/settings", token, false, nil, nil)
}

package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/presencehub/presencehub/queues"
)

// APIConfig configures the HTTP API (docs/http-api.md).
type APIConfig struct {
	// Backend is the store. Required.
	Backend Backend
	// Verifier checks the bearer token of every request. Required.
	Verifier *Verifier
	// Logger receives internal errors and store outages. Nil means
	// slog.Default().
	Logger *slog.Logger
	// Observer counts rejected requests. Nil means none are counted.
	Observer Observer
	// MaxBody is the largest request body in bytes; a larger one is refused
	// with 413. Zero means 64 KiB, the WebSocket frame limit.
	MaxBody int64
	// RateLimit is requests per second per token subject within its
	// workspace, with a burst of twice that. Zero means 50 (burst 100);
	// negative switches limiting off.
	RateLimit float64
}

// Defaults of APIConfig.
const (
	defaultAPIMaxBody   = 64 << 10
	defaultAPIRateLimit = 50
	// apiMessages is how many of a conversation's latest messages
	// GET /api/v1/conversations/{id} returns: enough for an integration to
	// show context, small enough that a long thread stays one cheap read.
	apiMessages = 100
)

// API serves /api/v1/: the HTTP twin of the WebSocket protocol, for helpdesk
// backends (inbound messages, automation) and scripts. It holds no state of
// its own but the rate limiter's buckets; it is safe for concurrent use.
type API struct {
	backend  Backend
	verifier *Verifier
	log      *slog.Logger
	obs      Observer
	maxBody  int64
	limits   *limiter // nil when rate limiting is off
	mux      *http.ServeMux
}

// apiRoles is a set of roles a route admits.
type apiRoles uint8

const (
	apiService apiRoles = 1 << iota
	apiAgent
	apiAdmin

	apiStaff = apiAgent | apiAdmin
	apiAll   = apiService | apiAgent | apiAdmin
)

func (s apiRoles) admits(r queues.Role) bool {
	switch r {
	case queues.RoleService:
		return s&apiService != 0
	case queues.RoleAgent:
		return s&apiAgent != 0
	case queues.RoleAdmin:
		return s&apiAdmin != 0
	}
	return false
}

// apiHandler serves one route for an authenticated, admitted caller. It
// writes the success response itself and returns any error for fail.
type apiHandler func(w http.ResponseWriter, r *http.Request, id Identity) error

// NewAPI returns the handler of /api/v1/. It handles full paths, so mount it
// at "/api/v1/" without stripping the prefix.
func NewAPI(cfg APIConfig) http.Handler {
	if cfg.Backend == nil || cfg.Verifier == nil {
		panic("hub.NewAPI: Backend and Verifier are required")
	}
	a := &API{
		backend:  cfg.Backend,
		verifier: cfg.Verifier,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		maxBody:  cfg.MaxBody,
		mux:      http.NewServeMux(),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.maxBody <= 0 {
		a.maxBody = defaultAPIMaxBody
	}
	switch {
	case cfg.RateLimit == 0:
		a.limits = newLimiter(defaultAPIRateLimit)
	case cfg.RateLimit > 0:
		a.limits = newLimiter(cfg.RateLimit)
	}

	routes := []struct {
		pattern string
		roles   apiRoles
		h       apiHandler
	}{
		{"POST /api/v1/conversations/{id}/inbound", apiService, a.inbound},
		{"POST /api/v1/conversations/{id}/reply", apiStaff, a.reply},
		{"POST /api/v1/conversations/{id}/assign", apiAll, a.assign},
		{"POST /api/v1/conversations/{id}/unassign", apiAll, a.unassign},
		{"POST /api/v1/conversations/{id}/move", apiAll, a.move},
		{"PUT /api/v1/conversations/{id}/boomerang", apiAll, a.setBoomerang},
		{"DELETE /api/v1/conversations/{id}/boomerang", apiAll, a.cancelBoomerang},
		{"GET /api/v1/conversations", apiAll, a.list},
		{"GET /api/v1/conversations/{id}", apiAll, a.conversation},
		{"GET /api/v1/agents", apiAll, a.agents},
		{"GET /api/v1/settings", apiAll, a.settings},
		{"PATCH /api/v1/settings", apiAdmin, a.updateSettings},
		{"POST /api/v1/admin/release-offline", apiAdmin, a.releaseOffline},
		{"GET /api/v1/admin/log", apiAdmin, a.adminLog},
	}
	for _, rt := range routes {
		a.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			a.serve(w, r, rt.roles, rt.h)
		})
	}
	return a
}

// ServeHTTP routes r. The mux's own 404 and 405 answers are plain text; they
// are replaced by JSON errors (keeping the mux's Allow header) so every
// answer of the API has the same shape.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The mux answers an unclean path ("/./", "//", "/../") with a redirect
	// that has no JSON body; no id can contain such a segment, so it is
	// simply not found.
	if p := r.URL.Path; p != "" && path.Clean(p) != p && path.Clean(p)+"/" != p {
		a.writeError(w, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such path: " + p})
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		p := &apiProbe{header: make(http.Header)}
		h.ServeHTTP(p, r)
		switch p.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", p.header.Get("Allow"))
			a.writeError(w, &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed",
				msg: r.Method + " is not allowed here; allowed: " + p.header.Get("Allow")})
			return
		case http.StatusNotFound:
			a.writeError(w, &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such endpoint"})
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

// apiProbe records what the mux would answer for an unrouted request.
type apiProbe struct {
	header http.Header
	status int
}

func (p *apiProbe) Header() http.Header { return p.header }

func (p *apiProbe) WriteHeader(status int) {
	if p.status == 0 {
		p.status = status
	}
}

func (p *apiProbe) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return len(b), nil
}

// serve runs the checks every route shares, in an order that spends the
// least on requests that will be refused: token, rate limit, role, then the
// agent record, then the route.
func (a *API) serve(w http.ResponseWriter, r *http.Request, roles apiRoles, h apiHandler) {
	// Answers depend on the token; no shared cache may keep them.
	w.Header().Set("Cache-Control", "no-store")

	id, err := a.authenticate(r)
	if err != nil {
		a.fail(w, r, Identity{}, err)
		return
	}
	if a.limits != nil {
		if ok, wait := a.limits.take(limitKey{ws: id.Workspace, sub: id.Agent}, time.Now()); !ok {
			a.reject(RejectRateLimited)
			secs := max(1, int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			a.writeError(w, &apiError{status: http.StatusTooManyRequests, code: "rate_limited",
				msg: fmt.Sprintf("too many requests; retry after %d s", secs)})
			return
		}
	}
	if !roles.admits(id.Role) {
		a.reject(RejectRole)
		a.writeError(w, &apiError{status: http.StatusForbidden, code: "forbidden",
			msg: fmt.Sprintf("role %s may not %s %s", id.Role, r.Method, r.URL.Path)})
		return
	}
	// Agents and admins exist in the store from their first request, so they
	// can be assigned to and show up in the agent list. A service token is an
	// integration, not a person: it never becomes an agent.
	if id.Role != queues.RoleService {
		if _, err := a.backend.EnsureAgent(r.Context(), id.Workspace,
			queues.Agent{ID: id.Agent, Name: id.Name, Role: id.Role}); err != nil {
			a.fail(w, r, id, err)
			return
		}
	}
	if err := h(w, r, id); err != nil {
		a.fail(w, r, id, err)
	}
}

// authenticate verifies the request's bearer token. Only the Authorization
// header is read: the access_token query parameter exists for browsers'
// WebSockets, and a token in an API URL would end up in proxy logs.
func (a *API) authenticate(r *http.Request) (Identity, error) {
	tok := ""
	if r.Header.Get("Authorization") != "" {
		tok = tokenFrom(r)
	}
	id, err := a.verifier.Verify(tok)
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, ErrNoToken):
		a.reject(RejectNoToken)
		return Identity{}, &apiError{status: http.StatusUnauthorized, code: "unauthorized",
			msg: "missing token: send Authorization: Bearer <JWT>", challenge: "Bearer"}
	case errors.Is(err, ErrExpired):
		a.reject(RejectExpired)
		return Identity{}, &apiError{status: http.StatusUnauthorized, code: "unauthorized",
			msg: "token expired", challenge: `Bearer error="invalid_token", error_description="token expired"`}
	default:
		a.reject(RejectBadToken)
		return Identity{}, &apiError{status: http.StatusUnauthorized, code: "unauthorized",
			msg: err.Error(), challenge: `Bearer error="invalid_token"`}
	}
}

// apiError is an error with its HTTP answer. Store errors are turned into
// one by fail; the API's own checks make them directly.
type apiError struct {
	status int
	code   string
	msg    string
	field  string
	// challenge is the WWW-Authenticate header of a 401.
	challenge string
	// current is the conversation's current version, for a 409.
	current *uint64
}

func (e *apiError) Error() string { return e.msg }

// apiBadRequest is a 400 for a request that is not what the endpoint reads:
// not JSON, wrong types, unknown fields.
func apiBadRequest(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "bad_request", field: field, msg: fmt.Sprintf(format, args...)}
}

// apiInvalid is a 400 for a value out of range; field names it.
func apiInvalid(field, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid", field: field,
		msg: field + ": " + fmt.Sprintf(format, args...)}
}

// fail answers a request with err: an *apiError as it is, store errors by
// their sentinel, anything else as a logged 500 whose details stay in the
// log.
func (a *API) fail(w http.ResponseWriter, r *http.Request, id Identity, err error) {
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.challenge != "" {
			w.Header().Set("WWW-Authenticate", ae.challenge)
		}
		a.writeError(w, ae)
		return
	}
	var inv *queues.InvalidError
	switch {
	case errors.As(err, &inv):
		ae = &apiError{status: http.StatusBadRequest, code: "invalid", field: inv.Field, msg: inv.Error()}
	case errors.Is(err, queues.ErrNotFound):
		ae = &apiError{status: http.StatusNotFound, code: "not_found", msg: err.Error()}
	case errors.Is(err, queues.ErrConflict):
		ae = &apiError{status: http.StatusConflict, code: "conflict", msg: err.Error(),
			current: a.currentVersion(id, r.PathValue("id"), err)}
	case errors.Is(err, queues.ErrForbidden):
		a.reject(RejectRole)
		ae = &apiError{status: http.StatusForbidden, code: "forbidden", msg: err.Error()}
	case errors.Is(err, queues.ErrInvalid):
		ae = &apiError{status: http.StatusBadRequest, code: "invalid", msg: err.Error()}
	case errors.Is(err, queues.ErrUnavailable):
		a.log.Warn("api: store unavailable", "method", r.Method, "path", r.URL.Path, "ws", id.Workspace, "err", err)
		ae = &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "the store cannot take requests right now; retry later"}
	case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		// The client went away; nobody reads this answer.
		a.log.Debug("api: request cancelled", "method", r.Method, "path", r.URL.Path, "err", err)
		ae = &apiError{status: http.StatusServiceUnavailable, code: "unavailable", msg: "request cancelled"}
	default:
		a.log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "ws", id.Workspace, "agent", id.Agent, "err", err)
		ae = &apiError{status: http.StatusInternalServerError, code: "internal", msg: "internal error"}
	}
	a.writeError(w, ae)
}

// currentVersion finds the version a conflicting change should be retried
// against: the conversation as it is now, else what the store reported.
func (a *API) currentVersion(id Identity, conv string, err error) *uint64 {
	if conv != "" {
		if c, cerr := a.backend.Conversation(id.Workspace, conv); cerr == nil {
			return &c.Version
		}
	}
	var stale *queues.StaleError
	if errors.As(err, &stale) {
		return &stale.Have
	}
	return nil
}

func (a *API) writeError(w http.ResponseWriter, e *apiError) {
	type body struct {
		Code           string  `json:"code"`
		Message        string  `json:"message"`
		Field          string  `json:"field,omitempty"`
		CurrentVersion *uint64 `json:"current_version,omitempty"`
	}
	a.writeJSON(w, e.status, struct {
		Error body `json:"error"`
	}{body{Code: e.code, Message: e.msg, Field: e.field, CurrentVersion: e.current}})
}

func (a *API) writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only a bug can get here (every answer is a plain struct).
		a.log.Error("api: encode response", "err", err)
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// apiScope is in every request body: a client may name the workspace, but
// only the token's. Accepting and checking it, rather than rejecting it as
// an unknown field, gives the precise error a confused integration needs.
type apiScope struct {
	WS        string `json:"ws"`
	Workspace string `json:"workspace"`
}

func (s *apiScope) scope() *apiScope { return s }

type scopedBody interface{ scope() *apiScope }

// apiCheckScope refuses a workspace named by the client that is not the token's.
func apiCheckScope(id Identity, field, value string) error {
	if value != "" && value != id.Workspace {
		return apiInvalid(field, "is not your token's workspace; the workspace always comes from the token")
	}
	return nil
}

// readBody decodes the request's JSON object into dst. Unknown fields and
// anything after the object are refused, so a typo in a field name is an
// error rather than a silently ignored option. With optional, an empty body
// is accepted and leaves dst as it is.
func (a *API) readBody(w http.ResponseWriter, r *http.Request, id Identity, dst scopedBody, optional bool) error {
	// Endpoints with a body take no query parameters; refusing them keeps a
	// workspace from being smuggled in through the URL instead.
	if _, err := apiQuery(r, id); err != nil {
		return err
	}
	if optional && r.ContentLength == 0 {
		return nil
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type",
			msg: "the request body must be JSON, sent with Content-Type: application/json"}
	}
	if r.ContentLength > a.maxBody {
		return a.tooBig()
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, a.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) && optional {
			return nil
		}
		return a.decodeError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return a.tooBig()
		}
		return apiBadRequest("", "request body: unexpected data after the JSON object")
	}
	s := dst.scope()
	if err := apiCheckScope(id, "ws", s.WS); err != nil {
		return err
	}
	return apiCheckScope(id, "workspace", s.Workspace)
}

func (a *API) tooBig() error {
	a.reject(RejectTooBig)
	return &apiError{status: http.StatusRequestEntityTooLarge, code: "too_large",
		msg: fmt.Sprintf("request body over %d bytes", a.maxBody)}
}

// decodeError explains a json.Decoder error in the API's terms.
func (a *API) decodeError(err error) error {
	var (
		mbe    *http.MaxBytesError
		syntax *json.SyntaxError
		typ    *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return a.tooBig()
	case errors.Is(err, io.EOF):
		return apiBadRequest("", "request body: want a JSON object, got nothing")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiBadRequest("", "request body: JSON ends early")
	case errors.As(err, &syntax):
		return apiBadRequest("", "request body: invalid JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return apiBadRequest("", "request body: want a JSON object, got %s", typ.Value)
		}
		// The path names embedded structs by their Go type; a client knows
		// only the JSON names.
		f := typ.Field
		for _, embedded := range []string{"apiScope.", "SettingsPatch."} {
			f = strings.TrimPrefix(f, embedded)
		}
		return apiBadRequest(f, "%s: want %s, got %s", f, apiJSONKind(typ.Type.String()), typ.Value)
	}
	// encoding/json reports an unknown field only as text.
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		f = strings.Trim(f, `"`)
		return apiBadRequest(f, "%s: unknown field", f)
	}
	return apiBadRequest("", "request body: %v", err)
}

// apiJSONKind names a Go type as the JSON a client should send.
func apiJSONKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "*int"),
		strings.HasPrefix(goType, "*uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string", goType == "*string":
		return "a string"
	case goType == "bool", goType == "*bool":
		return "true or false"
	case strings.HasPrefix(goType, "map"):
		return "an object"
	}
	return goType
}

// apiQuery returns the request's query parameters after refusing unknown
// and repeated ones and a workspace that is not the token's.
func apiQuery(r *http.Request, id Identity, known ...string) (map[string]string, error) {
	out := make(map[string]string)
	for k, vs := range r.URL.Query() {
		if k != "ws" && k != "workspace" && !slices.Contains(known, k) {
			return nil, apiBadRequest(k, "%s: unknown query parameter", k)
		}
		if len(vs) > 1 {
			return nil, apiBadRequest(k, "%s: given more than once", k)
		}
		if k == "ws" || k == "workspace" {
			if err := apiCheckScope(id, k, vs[0]); err != nil {
				return nil, err
			}
		}
		out[k] = vs[0]
	}
	return out, nil
}

// apiQueryInt parses an optional positive integer parameter at most hi.
func apiQueryInt(q map[string]string, name string, hi int) (int, error) {
	s, ok := q[name]
	if !ok || s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > hi {
		return 0, apiInvalid(name, "want a whole number from 1 to %d", hi)
	}
	return n, nil
}

// apiPathID is the {id} of the route, checked like every id taken from outside.
func apiPathID(r *http.Request) (string, error) {
	v := r.PathValue("id")
	if err := apiValidID("id", v); err != nil {
		return "", err
	}
	return v, nil
}

// reject counts a refused request, if anyone is counting.
func (a *API) reject(reason string) {
	if a.obs != nil {
		a.obs.Rejected(reason)
	}
}

package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presencehub/presencehub/queues"
)

// Identity is who a verified token says the caller is. It is copied out of
// the request before a connection starts, so nothing holds on to the request.
type Identity struct {
	Workspace string
	Agent     string
	Name      string
	Role      queues.Role
	Expires   time.Time
}

// Actor is the identity as the store records it in audit entries.
func (id Identity) Actor() queues.Actor {
	return queues.Actor{ID: id.Agent, Name: id.Name, Role: id.Role}
}

// Claims are the JWT claims a token carries: sub (agent id), name, ws
// (workspace), role and exp. Any HS256 JWT library can mint them.
type Claims struct {
	Name      string `json:"name"`
	Workspace string `json:"ws"`
	Role      string `json:"role"`
	jwt.RegisteredClaims
}

// wireClaims is what verify decodes a token's claims into: Claims with the
// dates as plain JSON numbers. jwt.NumericDate decodes each date with a
// json.Unmarshal of its own, nested in the claims' decoding, and that with
// the stack it grew was about a tenth of the hub's CPU in a storm of first
// connects. A json.Number holds what NumericDate reads (a number literal,
// or one in quotes), and numericDate turns it into the same time; the
// checks are golang-jwt's, through the Claims interface. FuzzVerifyClaims
// holds the result equal to decoding into Claims.
type wireClaims struct {
	Name      string           `json:"name"`
	Workspace string           `json:"ws"`
	Role      string           `json:"role"`
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.ClaimStrings `json:"aud"`
	ExpiresAt json.Number      `json:"exp"`
	NotBefore json.Number      `json:"nbf"`
	IssuedAt  json.Number      `json:"iat"`
	ID        string           `json:"jti"`
}

var _ jwt.Claims = (*wireClaims)(nil)

func (c *wireClaims) GetExpirationTime() (*jwt.NumericDate, error) { return numericDate(c.ExpiresAt) }
func (c *wireClaims) GetNotBefore() (*jwt.NumericDate, error)      { return numericDate(c.NotBefore) }
func (c *wireClaims) GetIssuedAt() (*jwt.NumericDate, error)       { return numericDate(c.IssuedAt) }
func (c *wireClaims) GetIssuer() (string, error)                   { return c.Issuer, nil }
func (c *wireClaims) GetSubject() (string, error)                  { return c.Subject, nil }
func (c *wireClaims) GetAudience() (jwt.ClaimStrings, error)       { return c.Audience, nil }

// numericDate reads a date as jwt.NumericDate.UnmarshalJSON does: seconds,
// possibly fractional, at jwt.TimePrecision. Absent is nil.
func numericDate(n json.Number) (*jwt.NumericDate, error) {
	if n == "" {
		return nil, nil
	}
	f, err := n.Float64()
	if err != nil {
		return nil, fmt.Errorf("could not convert %q to a date: %w", n, err)
	}
	sec, frac := math.Modf(f)
	return jwt.NewNumericDate(time.Unix(int64(sec), int64(frac*1e9))), nil
}

// Authentication errors, wrapped by Verify; callers use errors.Is.
var (
	ErrNoToken  = errors.New("no token")
	ErrBadToken = errors.New("invalid token")
	ErrExpired  = errors.New("token expired")
)

// maxNameLen bounds a token's display name (ids are bounded by ValidID).
const maxNameLen = 128

// Verifier checks HS256 tokens signed with one secret. It remembers the
// tokens it accepted until they expire (at most verifiedCap of them), so a
// backend that sends the same service token with every API call, or a
// console that reconnects with its token, is not parsed and verified again:
// that was 5 to 8 % of the hub's CPU under load.
type Verifier struct {
	secret []byte
	parser *jwt.Parser
	now    func() time.Time

	mu       sync.Mutex // guards verified
	verified map[string]Identity
}

// verifiedCap bounds the remembered tokens (a few hundred bytes each, so
// about 13 MB at most): enough for every console of a hub of 15,000 or
// more agents to come back after a network blip without its token being
// verified again.
const verifiedCap = 32768

// leeway is the clock skew allowed on a token's times.
const leeway = 5 * time.Second

// NewVerifier returns a Verifier for secret, which must be at least 16 bytes.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("token secret: %d bytes, want at least 16", len(secret))
	}
	v := &Verifier{secret: secret, now: time.Now, verified: make(map[string]Identity)}
	// Only HS256: "none" and every other algorithm are refused before the
	// signature is looked at.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	)
	return v, nil
}

// Verify parses and checks a token and returns the identity it carries.
func (v *Verifier) Verify(token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrNoToken
	}
	v.mu.Lock()
	id, ok := v.verified[token]
	if ok && !v.now().Before(id.Expires.Add(leeway)) {
		delete(v.verified, token)
		ok = false
	}
	v.mu.Unlock()
	if ok {
		return id, nil
	}
	id, err := v.verify(token)
	if err != nil {
		return Identity{}, err
	}
	v.mu.Lock()
	if len(v.verified) >= verifiedCap {
		for k := range v.verified { // the first in map order: any one
			delete(v.verified, k)
			break
		}
	}
	v.verified[token] = id
	v.mu.Unlock()
	return id, nil
}

// verify parses and checks a token.
func (v *Verifier) verify(token string) (Identity, error) {
	var c wireClaims
	_, err := v.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return v.secret, nil })
	if err != nil {
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Identity{}, ErrExpired
		}
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	id := Identity{Workspace: c.Workspace, Agent: c.Subject, Name: c.Name, Role: queues.Role(c.Role)}
	if exp, _ := c.GetExpirationTime(); exp != nil {
		id.Expires = exp.Time
	}
	if err := checkIdentity(id); err != nil {
		return Identity{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if id.Name == "" {
		id.Name = id.Agent
	}
	return id, nil
}

func checkIdentity(id Identity) error {
	switch id.Role {
	case queues.RoleAgent, queues.RoleAdmin, queues.RoleService:
	default:
		return fmt.Errorf("role %q: want agent, admin or service", id.Role)
	}
	if err := ValidID("ws", id.Workspace); err != nil {
		return err
	}
	if err := ValidID("sub", id.Agent); err != nil {
		return err
	}
	if len(id.Name) > maxNameLen {
		return fmt.Errorf("name: longer than %d bytes", maxNameLen)
	}
	return nil
}

// ValidID checks an id taken from outside (token, URL, body) by the
// store's rules: see queues.ValidID.
func ValidID(field, s string) error { return queues.ValidID(field, s) }

// Mint signs a token for id that expires after ttl. The token subcommand and
// tests use it; a helpdesk backend may mint the same claims with any JWT
// library.
func Mint(secret []byte, id Identity, ttl time.Duration) (string, error) {
	if err := checkIdentity(id); err != nil {
		return "", err
	}
	now := time.Now()
	c := Claims{
		Name:      id.Name,
		Workspace: id.Workspace,
		Role:      string(id.Role),
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   id.Agent,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
}

// tokenFrom finds the token of a request: the Authorization bearer header
// for non-browser clients, else the access_token query parameter, which is
// how browser JavaScript (which cannot set headers on a WebSocket) sends it.
func tokenFrom(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if t, ok := strings.CutPrefix(h, "Bearer "); ok {
			return strings.TrimSpace(t)
		}
		return ""
	}
	return r.URL.Query().Get("access_token")
}

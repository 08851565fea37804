package hub

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/presencehub/presencehub/queues"
)

// The verifier remembers accepted tokens, but a remembered token expires
// when its exp says, a refused token is never remembered, and the memory
// is bounded.
func TestVerifierRemembersTokensUntilTheyExpire(t *testing.T) {
	v, err := NewVerifier(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	v.now = func() time.Time { return now }
	id := Identity{Workspace: "acme", Agent: "al", Name: "Al", Role: queues.RoleAgent}
	tok, err := Mint(testSecret, id, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		got, err := v.Verify(tok)
		if err != nil || got.Agent != "al" || got.Workspace != "acme" || got.Role != queues.RoleAgent {
			t.Fatalf("verify %d: %+v %v", i, got, err)
		}
	}
	if len(v.verified) != 1 {
		t.Errorf("%d tokens remembered, want 1", len(v.verified))
	}
	now = now.Add(time.Minute + leeway - 2*time.Second)
	if _, err := v.Verify(tok); err != nil {
		t.Errorf("inside the leeway: %v", err)
	}
	now = now.Add(3 * time.Second)
	if _, err := v.Verify(tok); !errors.Is(err, ErrExpired) {
		t.Errorf("after exp: got %v, want ErrExpired", err)
	}
	if _, ok := v.verified[tok]; ok {
		t.Error("an expired token is still remembered")
	}

	// Signed with another secret: refused every time, never remembered.
	forged, err := Mint([]byte("another-secret-0123456789"), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := v.Verify(forged); !errors.Is(err, ErrBadToken) {
			t.Fatalf("forged: got %v, want ErrBadToken", err)
		}
	}
	if _, ok := v.verified[forged]; ok {
		t.Error("a refused token is remembered")
	}

	// An HS256 token whose claims name no role: refused, not remembered.
	bad, err := jwt.NewWithClaims(jwt.SigningMethodHS256, Claims{Workspace: "acme",
		RegisteredClaims: jwt.RegisteredClaims{Subject: "al", ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(bad); !errors.Is(err, ErrBadToken) {
		t.Errorf("no role: got %v", err)
	}
	if _, ok := v.verified[bad]; ok {
		t.Error("a token with bad claims is remembered")
	}

	for i := range verifiedCap + 50 {
		tok, err := Mint(testSecret, Identity{Workspace: "acme", Agent: "a" + strconv.Itoa(i), Role: queues.RoleAgent}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(tok); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(v.verified); n > verifiedCap {
		t.Errorf("%d tokens remembered, more than %d", n, verifiedCap)
	}
}

package main

import (
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenTTL outlives any run: -timeout is capped below it.
const tokenTTL = 6 * time.Hour

// minter signs HS256 tokens with the claims of docs/protocol.md
// (sub, name, ws, role, exp): exactly what a helpdesk backend would mint.
// Each identity gets one token for the run, as a console keeps the token
// it was given and presents it again when it reconnects.
type minter struct {
	secret []byte

	mu     sync.Mutex
	issued map[identity]string // guarded by mu
}

type identity struct{ ws, sub, role string }

func newMinter(secret string) *minter {
	return &minter{secret: []byte(secret), issued: make(map[identity]string)}
}

// token returns the identity's token, minting it the first time.
func (m *minter) token(ws, sub, role string) (string, error) {
	id := identity{ws, sub, role}
	m.mu.Lock()
	tok, ok := m.issued[id]
	m.mu.Unlock()
	if ok {
		return tok, nil
	}
	tok, err := m.mint(ws, sub, role)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	m.issued[id] = tok
	m.mu.Unlock()
	return tok, nil
}

type claims struct {
	Name string `json:"name"`
	WS   string `json:"ws"`
	Role string `json:"role"`
	jwt.RegisteredClaims
}

func (m *minter) mint(ws, sub, role string) (string, error) {
	now := time.Now()
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims{
		Name: sub,
		WS:   ws,
		Role: role,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   sub,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(tokenTTL)),
		},
	}).SignedString(m.secret)
}

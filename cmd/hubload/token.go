package main

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenTTL outlives any run: -timeout is capped below it.
const tokenTTL = 6 * time.Hour

// minter signs HS256 tokens with the claims of docs/protocol.md
// (sub, name, ws, role, exp): exactly what a helpdesk backend would mint.
type minter struct {
	secret []byte
}

type claims struct {
	Name string `json:"name"`
	WS   string `json:"ws"`
	Role string `json:"role"`
	jwt.RegisteredClaims
}

func (m minter) token(ws, sub, role string) (string, error) {
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

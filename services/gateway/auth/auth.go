// Package auth verifies and mints the platform's bearer tokens: JWTs signed
// with HMAC-SHA256, carrying the holder's role and, for staff, the
// restaurants they work for. The gateway verifies them; `pizza token` and
// `pizza dev` mint them with the development key.
package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Roles.
const (
	RoleCustomer = "customer"
	RoleDriver   = "driver"
	RoleKitchen  = "kitchen"
	RoleManager  = "manager"
	// RoleOperator runs the platform: every restaurant, every route.
	RoleOperator = "operator"
)

// Roles lists every role.
var Roles = []string{RoleCustomer, RoleDriver, RoleKitchen, RoleManager, RoleOperator}

// Audience and Issuer of the platform's tokens.
const (
	Audience = "awesome-pizza"
	Issuer   = "awesome-pizza"
)

// Principal is who a verified token speaks for.
type Principal struct {
	Subject     string   // customer id, driver id or staff id
	Role        string   //
	Restaurants []string // for kitchen and manager roles
}

// WorksAt reports whether staff may act for the restaurant.
func (p Principal) WorksAt(restaurantID string) bool {
	return p.Role == RoleOperator || slices.Contains(p.Restaurants, restaurantID)
}

type claims struct {
	Role        string   `json:"role"`
	Restaurants []string `json:"restaurants,omitempty"`
	jwt.RegisteredClaims
}

// Errors of Verify; the gateway answers 401 for all of them.
var (
	ErrMissing = errors.New("missing bearer token")
	ErrInvalid = errors.New("invalid token")
)

// Keys verifies and mints tokens with HMAC secrets. The first secret signs;
// every secret verifies (so a key can be rotated).
type Keys struct {
	secrets [][]byte
	now     func() time.Time
}

// NewKeys returns keys for the secrets (at least one, each at least 32 bytes).
func NewKeys(secrets ...[]byte) (*Keys, error) {
	if len(secrets) == 0 {
		return nil, errors.New("auth: no signing key")
	}
	for _, s := range secrets {
		if len(s) < 32 {
			return nil, errors.New("auth: a signing key must have at least 32 bytes")
		}
	}
	return &Keys{secrets: secrets, now: time.Now}, nil
}

// Verify checks a token: HS256 only (no "none", no algorithm switching),
// signature, expiry, audience and issuer, a known role and a subject.
func (k *Keys) Verify(token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrMissing
	}
	var lastErr error
	for _, secret := range k.secrets {
		var c claims
		_, err := jwt.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return secret, nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithAudience(Audience), jwt.WithIssuer(Issuer), jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(k.now), jwt.WithLeeway(30*time.Second))
		if err != nil {
			lastErr = err
			if errors.Is(err, jwt.ErrTokenSignatureInvalid) {
				continue // maybe signed with another (rotated) key
			}
			break
		}
		if !slices.Contains(Roles, c.Role) || c.Subject == "" {
			return Principal{}, fmt.Errorf("%w: role %q, subject %q", ErrInvalid, c.Role, c.Subject)
		}
		return Principal{Subject: c.Subject, Role: c.Role, Restaurants: c.Restaurants}, nil
	}
	return Principal{}, fmt.Errorf("%w: %v", ErrInvalid, lastErr)
}

// Mint signs a token for a principal, valid for ttl.
func (k *Keys) Mint(p Principal, ttl time.Duration) (string, error) {
	if !slices.Contains(Roles, p.Role) || p.Subject == "" {
		return "", fmt.Errorf("auth: cannot mint for role %q subject %q", p.Role, p.Subject)
	}
	now := k.now()
	c := claims{Role: p.Role, Restaurants: p.Restaurants, RegisteredClaims: jwt.RegisteredClaims{
		Subject: p.Subject, Audience: jwt.ClaimStrings{Audience}, Issuer: Issuer,
		IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(k.secrets[0])
}

// BearerToken extracts the token of an Authorization header.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// DevKey returns the development signing key kept in dir (created on first
// use), so tokens minted by `pizza token` work with `pizza dev` across
// restarts. Never use it in production: pass a secret instead.
func DevKey(dir string) ([]byte, error) {
	path := filepath.Join(dir, "dev-jwt.key")
	if b, err := os.ReadFile(path); err == nil {
		return hex.DecodeString(strings.TrimSpace(string(b)))
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)), 0o600); err != nil {
		return nil, err
	}
	return key, nil
}

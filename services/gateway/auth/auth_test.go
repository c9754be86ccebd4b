package auth

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestTokensRoundTripAndRejections(t *testing.T) {
	k, err := NewKeys(secret)
	if err != nil {
		t.Fatal(err)
	}
	good, err := k.Mint(Principal{Subject: "m1", Role: RoleManager, Restaurants: []string{"pearl"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := k.Verify(good)
	if err != nil || p.Subject != "m1" || !p.WorksAt("pearl") || p.WorksAt("downtown") {
		t.Fatalf("verify: %+v %v", p, err)
	}

	mint := func(mutate func(*claims), method jwt.SigningMethod, key any) string {
		c := claims{Role: RoleCustomer, RegisteredClaims: jwt.RegisteredClaims{Subject: "c1", Audience: jwt.ClaimStrings{Audience}, Issuer: Issuer,
			ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}}
		mutate(&c)
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	same := func(*claims) {}
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`))
	payload := strings.Split(mint(same, jwt.SigningMethodHS256, secret), ".")[1]
	bad := map[string]string{
		"missing":       "",
		"alg none":      header + "." + payload + ".",
		"expired":       mint(func(c *claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour)) }, jwt.SigningMethodHS256, secret),
		"no expiry":     mint(func(c *claims) { c.ExpiresAt = nil }, jwt.SigningMethodHS256, secret),
		"wrong aud":     mint(func(c *claims) { c.Audience = jwt.ClaimStrings{"someone-else"} }, jwt.SigningMethodHS256, secret),
		"wrong issuer":  mint(func(c *claims) { c.Issuer = "evil" }, jwt.SigningMethodHS256, secret),
		"bad signature": mint(same, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx")),
		"HS512":         mint(same, jwt.SigningMethodHS512, secret),
		"unknown role":  mint(func(c *claims) { c.Role = "root" }, jwt.SigningMethodHS256, secret),
		"no subject":    mint(func(c *claims) { c.Subject = "" }, jwt.SigningMethodHS256, secret),
		"garbage":       "not.a.token",
	}
	for name, tok := range bad {
		if _, err := k.Verify(tok); !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrMissing) {
			t.Errorf("%s: accepted or wrong error: %v", name, err)
		}
	}
	// Rotation: a token signed with the old key still verifies.
	rotated, _ := NewKeys([]byte("new-secret-new-secret-new-secret"), secret)
	if _, err := rotated.Verify(good); err != nil {
		t.Fatalf("rotated keys: %v", err)
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "abc": "", "": ""} {
		if got := BearerToken(h); got != want {
			t.Errorf("BearerToken(%q) = %q", h, got)
		}
	}
}

func TestDevKeyIsStable(t *testing.T) {
	dir := t.TempDir()
	a, err := DevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DevKey(dir)
	if len(a) != 32 || string(a) != string(b) {
		t.Fatal("dev key not stable")
	}
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/gateway/auth"
)

// runToken mints a bearer token with the development key of a data dir (or
// a given secret), for scripts and for trying the API by hand.
func runToken(_ context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg PlatformConfig
	var role, subject, restaurants string
	var ttl time.Duration
	fs := flag.NewFlagSet("pizza token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&role, "role", "", "customer, driver, kitchen, manager or operator")
	fs.StringVar(&subject, "subject", "", "the customer, driver or staff id the token speaks for")
	fs.StringVar(&restaurants, "restaurant", "", "restaurants a kitchen or manager token covers, comma-separated")
	fs.DurationVar(&ttl, "ttl", 24*time.Hour, "validity")
	service.StringFlag(fs, &cfg.DataDir, "data-dir", ".pizza-data", "data dir whose development key signs the token")
	service.StringFlag(fs, &cfg.JWTSecret, "jwt-secret", "", "HMAC secret instead of the development key")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !slices.Contains(auth.Roles, role) {
		return fmt.Errorf("--role must be one of %s", strings.Join(auth.Roles, ", "))
	}
	if subject == "" {
		return errors.New("--subject is required")
	}
	p := auth.Principal{Subject: subject, Role: role}
	if restaurants != "" {
		p.Restaurants = strings.Split(restaurants, ",")
	}
	if (role == auth.RoleKitchen || role == auth.RoleManager) && len(p.Restaurants) == 0 {
		return errors.New("kitchen and manager tokens need --restaurant")
	}
	keys, err := signingKeys(cfg)
	if err != nil {
		return err
	}
	tok, err := keys.Mint(p, ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// Package catalog holds the chain's reference data: restaurants with their
// locations, menus (pizza types, sizes, prices, toppings, recipes), chefs,
// drivers and opening stock. It is configuration, versioned with the code
// and loaded at start (the embedded seed, or a file given by the operator);
// orders record the prices they were placed at, so history never depends on
// a later menu.
package catalog

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// Sizes a pizza can be ordered in.
var Sizes = []string{"Small", "Medium", "Large", "ExtraLarge"}

// PaymentMethods accepted at checkout.
var PaymentMethods = []string{"CreditCard", "DebitCard", "Cash", "DigitalWallet"}

// Catalog is the loaded reference data. It is immutable after Load.
type Catalog struct {
	Currency    string       `json:"currency"`
	Restaurants []Restaurant `json:"restaurants"`
	Menu        Menu         `json:"menu"`

	byID map[string]*Restaurant
}

// Restaurant is one branch of the chain.
type Restaurant struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Address  string          `json:"address"`
	Location events.GeoPoint `json:"location"`
	// DeliveryFeeCents is added to every order's subtotal.
	DeliveryFeeCents int64 `json:"deliveryFeeCents,omitempty"`
	// Pizzas lists the pizza types this branch sells; empty means all.
	Pizzas  []string         `json:"pizzas,omitempty"`
	Chefs   []Chef           `json:"chefs"`
	Drivers []Driver         `json:"drivers"`
	Stock   map[string]int64 `json:"stock"` // ingredient -> units on hand at opening
}

// Chef works in one restaurant's kitchen.
type Chef struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Capacity int    `json:"capacity"` // pizzas prepared at once
}

// Driver delivers for one restaurant.
type Driver struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Vehicle string `json:"vehicle"`
}

// Menu is shared by the chain; restaurants may sell a subset.
type Menu struct {
	Pizzas   []Pizza   `json:"pizzas"`
	Toppings []Topping `json:"toppings"`
}

// Pizza is a menu item.
type Pizza struct {
	Type        string           `json:"pizzaType"`
	Name        string           `json:"name"`
	Description string           `json:"description"`
	PriceCents  map[string]int64 `json:"priceCents"` // per size
	// Recipe lists ingredient units for a Medium; other sizes scale it.
	Recipe map[string]int64 `json:"recipe"`
}

// Topping is an extra that can be added to any pizza.
type Topping struct {
	Name       string           `json:"name"`
	PriceCents map[string]int64 `json:"priceCents"` // per size
	Ingredient string           `json:"ingredient"`
}

//go:embed seed.json
var seed []byte

// Default returns the seeded catalogue used by local runs and tests.
func Default() *Catalog {
	c, err := Parse(seed)
	if err != nil {
		panic("catalog: embedded seed is invalid: " + err.Error())
	}
	return c
}

// Load reads a catalogue file, or returns the seed when path is empty.
func Load(path string) (*Catalog, error) {
	if path == "" {
		return Default(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return Parse(b)
}

// Parse decodes and validates a catalogue.
func Parse(b []byte) (*Catalog, error) {
	var c Catalog
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c.byID = make(map[string]*Restaurant, len(c.Restaurants))
	for i := range c.Restaurants {
		c.byID[c.Restaurants[i].ID] = &c.Restaurants[i]
	}
	return &c, nil
}

func (c *Catalog) validate() error {
	if c.Currency == "" {
		return errors.New("currency is missing")
	}
	seen := map[string]bool{}
	for _, r := range c.Restaurants {
		if r.DeliveryFeeCents < 0 {
			return fmt.Errorf("restaurant %q has a negative delivery fee", r.ID)
		}
		if err := events.ValidateID(r.ID); err != nil {
			return fmt.Errorf("restaurant %q: %w", r.ID, err)
		}
		if seen[r.ID] {
			return fmt.Errorf("restaurant %q listed twice", r.ID)
		}
		seen[r.ID] = true
	}
	for _, p := range c.Menu.Pizzas {
		for _, s := range Sizes {
			if p.PriceCents[s] <= 0 {
				return fmt.Errorf("pizza %q has no price for %s", p.Type, s)
			}
		}
	}
	for _, t := range c.Menu.Toppings {
		for _, s := range Sizes {
			if t.PriceCents[s] < 0 {
				return fmt.Errorf("topping %q has a negative price for %s", t.Name, s)
			}
		}
	}
	return nil
}

// Restaurant returns a restaurant by id.
func (c *Catalog) Restaurant(id string) (*Restaurant, bool) {
	r, ok := c.byID[id]
	return r, ok
}

// MenuFor returns the pizzas a restaurant sells, sorted by type.
func (c *Catalog) MenuFor(restaurantID string) ([]Pizza, bool) {
	r, ok := c.byID[restaurantID]
	if !ok {
		return nil, false
	}
	var out []Pizza
	for _, p := range c.Menu.Pizzas {
		if len(r.Pizzas) == 0 || slices.Contains(r.Pizzas, p.Type) {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Type < out[j].Type })
	return out, true
}

// Errors returned by Price; the field they concern is in the message.
var (
	ErrUnknownRestaurant = errors.New("unknown restaurant")
	ErrUnknownPizza      = errors.New("unknown pizza type")
	ErrUnknownSize       = errors.New("unknown size")
	ErrUnknownTopping    = errors.New("unknown topping")
)

// Price returns the unit price of a pizza of a size with extra toppings at
// a restaurant, in integer cents.
func (c *Catalog) Price(restaurantID, pizzaType, size string, toppings []string) (int64, error) {
	r, ok := c.byID[restaurantID]
	if !ok {
		return 0, ErrUnknownRestaurant
	}
	if !slices.Contains(Sizes, size) {
		return 0, ErrUnknownSize
	}
	var pizza *Pizza
	for i := range c.Menu.Pizzas {
		if c.Menu.Pizzas[i].Type == pizzaType {
			pizza = &c.Menu.Pizzas[i]
			break
		}
	}
	if pizza == nil || (len(r.Pizzas) > 0 && !slices.Contains(r.Pizzas, pizzaType)) {
		return 0, ErrUnknownPizza
	}
	total := pizza.PriceCents[size]
	for _, name := range toppings {
		t, ok := c.topping(name)
		if !ok {
			return 0, fmt.Errorf("%w %q", ErrUnknownTopping, name)
		}
		total += t.PriceCents[size]
	}
	return total, nil
}

func (c *Catalog) topping(name string) (*Topping, bool) {
	for i := range c.Menu.Toppings {
		if c.Menu.Toppings[i].Name == name {
			return &c.Menu.Toppings[i], true
		}
	}
	return nil, false
}

// sizeScalePercent scales a Medium recipe to other sizes.
var sizeScalePercent = map[string]int64{"Small": 75, "Medium": 100, "Large": 150, "ExtraLarge": 200}

// Ingredients returns the ingredient units needed for quantity pizzas of a
// type and size with extra toppings: the Medium recipe scaled by size
// (rounded up) plus one scaled unit of each topping's ingredient.
func (c *Catalog) Ingredients(pizzaType, size string, toppings []string, quantity int) (map[string]int64, error) {
	scale, ok := sizeScalePercent[size]
	if !ok {
		return nil, ErrUnknownSize
	}
	var pizza *Pizza
	for i := range c.Menu.Pizzas {
		if c.Menu.Pizzas[i].Type == pizzaType {
			pizza = &c.Menu.Pizzas[i]
		}
	}
	if pizza == nil {
		return nil, ErrUnknownPizza
	}
	out := map[string]int64{}
	add := func(ingredient string, units int64) {
		out[ingredient] += (units*scale + 99) / 100 * int64(quantity)
	}
	for ing, units := range pizza.Recipe {
		add(ing, units)
	}
	for _, name := range toppings {
		t, ok := c.topping(name)
		if !ok {
			return nil, fmt.Errorf("%w %q", ErrUnknownTopping, name)
		}
		add(t.Ingredient, 1)
	}
	return out, nil
}

// IngredientNames lists every ingredient the menu uses, sorted.
func (c *Catalog) IngredientNames() []string {
	set := map[string]bool{}
	for _, p := range c.Menu.Pizzas {
		for ing := range p.Recipe {
			set[ing] = true
		}
	}
	for _, t := range c.Menu.Toppings {
		set[t.Ingredient] = true
	}
	out := make([]string, 0, len(set))
	for ing := range set {
		out = append(out, ing)
	}
	sort.Strings(out)
	return out
}

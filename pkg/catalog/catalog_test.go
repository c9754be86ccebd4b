package catalog

import (
	"errors"
	"testing"
)

func TestSeedIsValidAndPrices(t *testing.T) {
	c := Default()
	if len(c.Restaurants) < 3 {
		t.Fatalf("%d restaurants", len(c.Restaurants))
	}
	for _, r := range c.Restaurants {
		if len(r.Chefs) == 0 || len(r.Drivers) == 0 || len(r.Stock) == 0 {
			t.Errorf("%s lacks chefs, drivers or stock", r.ID)
		}
		if menu, _ := c.MenuFor(r.ID); len(menu) == 0 {
			t.Errorf("%s has no menu", r.ID)
		}
	}
	p, err := c.Price("downtown", "Margherita", "Large", []string{"Basil", "ExtraCheese"})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(999 + 600 + 150 + 100 + 50 + 100); p != want {
		t.Fatalf("price %d, want %d", p, want)
	}
	cases := []struct {
		r, p, s string
		tops    []string
		want    error
	}{
		{"nowhere", "Margherita", "Large", nil, ErrUnknownRestaurant},
		{"downtown", "Calzone", "Large", nil, ErrUnknownPizza},
		{"hawthorne", "Hawaiian", "Large", nil, ErrUnknownPizza}, // not sold there
		{"downtown", "Margherita", "Huge", nil, ErrUnknownSize},
		{"downtown", "Margherita", "Large", []string{"Anchovies"}, ErrUnknownTopping},
	}
	for _, tc := range cases {
		if _, err := c.Price(tc.r, tc.p, tc.s, tc.tops); !errors.Is(err, tc.want) {
			t.Errorf("Price(%s,%s,%s,%v) = %v, want %v", tc.r, tc.p, tc.s, tc.tops, err, tc.want)
		}
	}
}

func TestParseRejectsBadCatalogues(t *testing.T) {
	for _, b := range []string{`{`, `{"restaurants":[]}`, `{"currency":"USD","restaurants":[{"id":"a.b"}]}`,
		`{"currency":"USD","menu":{"pizzas":[{"pizzaType":"X","priceCents":{"Small":1}}]}}`} {
		if _, err := Parse([]byte(b)); err == nil {
			t.Errorf("Parse(%s) accepted", b)
		}
	}
}

func TestIngredientsScaleBySize(t *testing.T) {
	c := Default()
	got, err := c.Ingredients("Margherita", "Large", []string{"ExtraCheese"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	// Medium recipe: dough 1, tomato_sauce 1, mozzarella 2, basil 1; Large = x1.5 rounded up.
	want := map[string]int64{"dough": 4, "tomato_sauce": 4, "mozzarella": 6 + 4, "basil": 4}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %d, want %d (all %v)", k, got[k], v, got)
		}
	}
	if _, err := c.Ingredients("Margherita", "Huge", nil, 1); !errors.Is(err, ErrUnknownSize) {
		t.Fatal(err)
	}
	if len(c.IngredientNames()) < 10 {
		t.Fatal("too few ingredients")
	}
}

package ordersapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const good = `{"customerId":"c1","restaurantId":"downtown","items":[{"pizzaType":"Margherita","size":"Large","toppings":["Basil"],"quantity":2}],
"address":{"street":"1 Main St","city":"Portland","state":"OR","zipCode":"97201","coordinates":{"latitude":45.52,"longitude":-122.68}},"paymentMethod":"CreditCard"}`

func TestDecodeAndValidateGoodRequest(t *testing.T) {
	req, err := DecodePlaceOrder([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if errs := req.Validate(); len(errs) != 0 {
		t.Fatalf("valid request rejected: %v", errs)
	}
}

func TestDecodeRejectsMalformedBodies(t *testing.T) {
	cases := map[string]struct{ body, field string }{
		"empty":         {``, ""},
		"syntax":        {`{"customerId":`, ""},
		"not object":    {`[1,2]`, "(root)"},
		"unknown field": {`{"customerId":"c1","price":1}`, "price"},
		"wrong type":    {`{"items":[{"quantity":"two"}]}`, "items.quantity"},
		"two objects":   {`{} {}`, ""},
	}
	for name, tc := range cases {
		_, err := DecodePlaceOrder([]byte(tc.body))
		var p *Problem
		if !errors.As(err, &p) || p.Status != 400 {
			t.Errorf("%s: got %v", name, err)
			continue
		}
		if tc.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tc.field) {
			t.Errorf("%s: field %v, want %s", name, p.Errors, tc.field)
		}
	}
}

func TestValidateNamesEveryBadField(t *testing.T) {
	cases := map[string]struct {
		mutate func(*PlaceOrderRequest)
		field  string
	}{
		"no customer":     {func(r *PlaceOrderRequest) { r.CustomerID = "" }, "customerId"},
		"unsafe customer": {func(r *PlaceOrderRequest) { r.CustomerID = "a.b" }, "customerId"},
		"unsafe rest":     {func(r *PlaceOrderRequest) { r.RestaurantID = "x>" }, "restaurantId"},
		"no items":        {func(r *PlaceOrderRequest) { r.Items = nil }, "items"},
		"bad size":        {func(r *PlaceOrderRequest) { r.Items[0].Size = "Huge" }, "items[0].size"},
		"zero quantity":   {func(r *PlaceOrderRequest) { r.Items[0].Quantity = 0 }, "items[0].quantity"},
		"negative qty":    {func(r *PlaceOrderRequest) { r.Items[0].Quantity = -3 }, "items[0].quantity"},
		"absurd quantity": {func(r *PlaceOrderRequest) { r.Items[0].Quantity = 10000 }, "items[0].quantity"},
		"no pizza":        {func(r *PlaceOrderRequest) { r.Items[0].PizzaType = "" }, "items[0].pizzaType"},
		"no address":      {func(r *PlaceOrderRequest) { r.Address = nil }, "address"},
		"no street":       {func(r *PlaceOrderRequest) { r.Address.Street = " " }, "address.street"},
		"no coordinates":  {func(r *PlaceOrderRequest) { r.Address.Coordinates = nil }, "address.coordinates"},
		"lat range":       {func(r *PlaceOrderRequest) { v := 91.0; r.Address.Coordinates.Latitude = &v }, "address.coordinates.latitude"},
		"lon range":       {func(r *PlaceOrderRequest) { v := -181.0; r.Address.Coordinates.Longitude = &v }, "address.coordinates.longitude"},
		"bad payment":     {func(r *PlaceOrderRequest) { r.PaymentMethod = "Bitcoin" }, "paymentMethod"},
		"many toppings":   {func(r *PlaceOrderRequest) { r.Items[0].Toppings = strings.Split("a,b,c,d,e,f,g,h,i,j,k", ",") }, "items[0].toppings"},
	}
	for name, tc := range cases {
		req, _ := DecodePlaceOrder([]byte(good))
		tc.mutate(&req)
		errs := req.Validate()
		found := false
		for _, e := range errs {
			found = found || e.Field == tc.field
		}
		if !found {
			t.Errorf("%s: errors %v do not name %s", name, errs, tc.field)
		}
	}
}

// FuzzDecodePlaceOrder: any body either decodes into a request whose
// validation terminates with field errors, or yields a 400 problem; never a
// panic, never another error type.
func FuzzDecodePlaceOrder(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"items":[{"quantity":1e309}]}`))
	f.Add([]byte(`{"address":{"coordinates":{"latitude":null}}}`))
	f.Add([]byte(`{"customerId":"\u0000"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodePlaceOrder(body)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) || p.Status != 400 || p.Type != TypeMalformedRequest {
				t.Fatalf("unexpected error %T %v", err, err)
			}
			return
		}
		errs := req.Validate()
		for _, e := range errs {
			if e.Field == "" || e.Detail == "" {
				t.Fatalf("unnamed field error %+v", e)
			}
		}
		if len(errs) == 0 {
			// A valid request must survive a round trip unchanged.
			b, _ := json.Marshal(req)
			again, err := DecodePlaceOrder(b)
			if err != nil || len(again.Validate()) != 0 {
				t.Fatalf("round trip of a valid request failed: %v", err)
			}
		}
	})
}

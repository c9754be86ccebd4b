package inventoryapi

import (
	"errors"
	"reflect"
	"testing"
)

func fields(errs []FieldError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func TestStockUpdateRequestValidate(t *testing.T) {
	cases := []struct {
		name string
		req  StockUpdateRequest
		want []string
	}{
		{"restock ok", StockUpdateRequest{Mode: ModeRestock, Items: []StockUpdateItem{{"dough", 5}}}, nil},
		{"adjust to zero ok", StockUpdateRequest{Mode: ModeAdjust, Items: []StockUpdateItem{{"dough", 0}}, Reason: "spoiled"}, nil},
		{"unknown mode", StockUpdateRequest{Mode: "set", Items: []StockUpdateItem{{"dough", 5}}}, []string{"mode"}},
		{"no items", StockUpdateRequest{Mode: ModeRestock}, []string{"items"}},
		{"restock zero and negative", StockUpdateRequest{Mode: ModeRestock, Items: []StockUpdateItem{{"dough", 0}, {"basil", -1}}},
			[]string{"items[0].quantity", "items[1].quantity"}},
		{"adjust negative, no reason", StockUpdateRequest{Mode: ModeAdjust, Items: []StockUpdateItem{{"dough", -1}}},
			[]string{"items[0].quantity", "reason"}},
		{"missing and repeated ingredient", StockUpdateRequest{Mode: ModeRestock, Items: []StockUpdateItem{{"", 1}, {"dough", 1}, {"dough", 2}}},
			[]string{"items[0].ingredient", "items[2].ingredient"}},
		{"too many units", StockUpdateRequest{Mode: ModeRestock, Items: []StockUpdateItem{{"dough", MaxUnits + 1}}}, []string{"items[0].quantity"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fields(tc.req.Validate()); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("fields %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCommandsValidate(t *testing.T) {
	r := RestockCommand{RestaurantID: "downtown", Items: []RestockItem{{"dough", 0}}}
	if got := fields(r.Validate()); !reflect.DeepEqual(got, []string{"items[0].quantity"}) {
		t.Fatalf("restock fields %v", got)
	}
	a := AdjustCommand{RestaurantID: "downtown", Items: []AdjustItem{{"dough", -3}}}
	if got := fields(a.Validate()); !reflect.DeepEqual(got, []string{"items[0].onHand", "reason"}) {
		t.Fatalf("adjust fields %v", got)
	}
}

func TestDecodeStockUpdate(t *testing.T) {
	req, err := DecodeStockUpdate([]byte(`{"mode":"adjust","items":[{"ingredient":"dough","quantity":12}],"reason":"count"}`))
	if err != nil {
		t.Fatal(err)
	}
	cmd := req.Adjust("downtown", "manager-1", "key-1", "req-1")
	want := AdjustCommand{RestaurantID: "downtown", Items: []AdjustItem{{"dough", 12}}, Reason: "count", By: "manager-1", IdempotencyKey: "key-1", CorrelationID: "req-1"}
	if !reflect.DeepEqual(cmd, want) || req.Subject() != SubjectAdjust {
		t.Fatalf("command %+v on %s", cmd, req.Subject())
	}
	for body, field := range map[string]string{
		`{"mode":"restock","items":[{"ingredient":"dough","quantity":1.5}]}`: "items.quantity",
		`{"mode":"restock","items":[],"extra":1}`:                            "extra",
		`{"mode":"restock"} {}`:                                              "",
		``:                                                                   "",
	} {
		_, err := DecodeStockUpdate([]byte(body))
		var p *Problem
		if !errors.As(err, &p) || p.Status != 400 {
			t.Fatalf("%q: err %v, want a 400 problem", body, err)
		}
		if field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != field) {
			t.Fatalf("%q: problem %+v, want field %s", body, p, field)
		}
	}
}

// Whatever the body, decoding either succeeds or returns a 400 problem.
func FuzzDecodeStockUpdate(f *testing.F) {
	f.Add([]byte(`{"mode":"restock","items":[{"ingredient":"dough","quantity":5}]}`))
	f.Add([]byte(`{"mode":"adjust","items":[{"ingredient":"dough","quantity":0}],"reason":"count"}`))
	f.Add([]byte(`{"items":[{"quantity":1e99}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeStockUpdate(body)
		if err != nil {
			var p *Problem
			if !errors.As(err, &p) || p.Status != 400 {
				t.Fatalf("%q: %v is not a 400 problem", body, err)
			}
			return
		}
		_ = req.Validate()
	})
}

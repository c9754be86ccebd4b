package kitchenapi

import (
	"testing"

	"github.com/awesome-pizza/pizza/pkg/catalog"
)

func TestDecodeChefBreakRequest(t *testing.T) {
	tests := []struct {
		body    string
		status  int
		field   string
		onBreak bool
	}{
		{`{"onBreak":true}`, 0, "", true},
		{`{"onBreak":false}`, 0, "", false},
		{`{}`, 422, "onBreak", false},
		{`{"onBreak":"yes"}`, 400, "onBreak", false},
		{`{"onBreak":true,"chef":"x"}`, 400, "chef", false},
		{`{"onBreak":true}{}`, 400, "", false},
		{``, 400, "", false},
		{`[`, 400, "", false},
	}
	for _, tt := range tests {
		req, err := DecodeChefBreakRequest([]byte(tt.body))
		if tt.status == 0 {
			if err != nil || *req.OnBreak != tt.onBreak {
				t.Errorf("%s: %v %v", tt.body, req, err)
			}
			continue
		}
		p, ok := err.(*Problem)
		if !ok || p.Status != tt.status {
			t.Errorf("%s: got %v, want %d", tt.body, err, tt.status)
			continue
		}
		if tt.field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.field) {
			t.Errorf("%s: fields %+v, want %s", tt.body, p.Errors, tt.field)
		}
	}
}

func FuzzDecodeChefBreakRequest(f *testing.F) {
	f.Add([]byte(`{"onBreak":true}`))
	f.Add([]byte(`{"onBreak":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := DecodeChefBreakRequest(b)
		if err == nil && req.OnBreak == nil {
			t.Fatal("accepted a body without onBreak")
		}
	})
}

func TestKeysAndEmptyDisplay(t *testing.T) {
	for got, want := range map[string]string{
		HeadKey("pizza:", "downtown"):  "pizza:rm:kitchen-display:head:downtown",
		QueueKey("pizza:", "downtown"): "pizza:rm:kitchen-display:queue:downtown",
		TicketKey("pizza:", "o-1"):     "pizza:rm:kitchen-display:ticket:o-1",
		CheckpointKey("pizza:"):        "pizza:rm:kitchen-display:_checkpoint",
	} {
		if got != want {
			t.Errorf("key %s, want %s", got, want)
		}
	}
	if got := Channel("pizza:"); got != "pizza:notify:kitchen-display" {
		t.Errorf("channel %s", got)
	}
	r, _ := catalog.Default().Restaurant("pearl")
	d := EmptyDisplay(r)
	if d.RestaurantID != "pearl" || len(d.Chefs) != 3 || d.Tickets == nil || d.Chefs[0].Capacity != 2 {
		t.Errorf("empty display %+v", d)
	}
}

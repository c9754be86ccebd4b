package kitchenapi

import (
	"encoding/json"
	"slices"
	"strconv"
	"time"
)

// AppendJSON appends the display as encoding/json would encode it, byte
// for byte, without reflection. A busy kitchen's display holds thousands
// of tickets, and the gateway encodes the assembled display (LoadDisplay)
// for every read of it and every frame of its stream.
func (d *KitchenDisplay) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = slices.Grow(b, 256+400*len(d.Tickets))
	b = append(b, `{"restaurantId":`...)
	b = appendString(b, d.RestaurantID)
	b = append(b, `,"tickets":`...)
	if d.Tickets == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i := range d.Tickets {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = d.Tickets[i].appendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	// Chefs and counts are a handful of fields: encoding/json as is.
	b = append(b, `,"chefs":`...)
	if b, err = appendMarshal(b, d.Chefs); err != nil {
		return nil, err
	}
	b = append(b, `,"counts":`...)
	if b, err = appendMarshal(b, d.Counts); err != nil {
		return nil, err
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, d.Version, 10)
	b = append(b, `,"lastUpdated":`...)
	if b, err = appendTime(b, d.LastUpdated); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

func (t *TicketView) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"orderId":`...)
	b = appendString(b, t.OrderID)
	b = append(b, `,"stage":`...)
	b = appendString(b, t.Stage)
	b = append(b, `,"lines":`...)
	if t.Lines == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, l := range t.Lines {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"pizzaType":`...)
			b = appendString(b, l.PizzaType)
			b = append(b, `,"size":`...)
			b = appendString(b, l.Size)
			b = append(b, `,"toppings":`...)
			if l.Toppings == nil {
				b = append(b, "null"...)
			} else {
				b = append(b, '[')
				for j, s := range l.Toppings {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendString(b, s)
				}
				b = append(b, ']')
			}
			b = append(b, `,"quantity":`...)
			b = strconv.AppendInt(b, int64(l.Quantity), 10)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if t.ChefID != "" {
		b = append(b, `,"chefId":`...)
		b = appendString(b, t.ChefID)
	}
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(t.Attempt), 10)
	b = append(b, `,"remake":`...)
	b = strconv.AppendBool(b, t.Remake)
	if t.QueuePosition != 0 {
		b = append(b, `,"queuePosition":`...)
		b = strconv.AppendInt(b, int64(t.QueuePosition), 10)
	}
	b = append(b, `,"queuedAt":`...)
	if b, err = appendTime(b, t.QueuedAt); err != nil {
		return nil, err
	}
	b = append(b, `,"stageStartedAt":`...)
	if b, err = appendTime(b, t.StageStartedAt); err != nil {
		return nil, err
	}
	if t.DueAt != nil {
		b = append(b, `,"dueAt":`...)
		if b, err = appendTime(b, *t.DueAt); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// appendString quotes s as encoding/json does. Identifiers, stages, pizza
// and topping names are plain ASCII and are copied; anything that needs
// escaping (quotes, control characters, HTML characters, non-ASCII) goes
// through encoding/json.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendTime is time.Time's JSON form (RFC 3339 with nanoseconds, quoted).
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, err
	}
	return append(b, '"'), nil
}

func appendMarshal(b []byte, v any) ([]byte, error) {
	m, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, m...), nil
}

package kitchenapi

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// StoredHead is what HeadKey holds: the display without its tickets, and
// the Ready tickets it keeps, oldest first (the projector drops the oldest
// beyond ReadyTicketsKept).
type StoredHead struct {
	Display KitchenDisplay `json:"display"`
	Ready   []ReadyRef     `json:"ready,omitempty"`
}

// ReadyRef is a Ready ticket the display keeps: its order, when it became
// Ready, and its queue sequence (ties keep queue order).
type ReadyRef struct {
	OrderID  string    `json:"orderId"`
	At       time.Time `json:"at"`
	QueueSeq uint64    `json:"queueSeq"`
}

// StoredTicket is what TicketKey holds: the ticket as the display shows it
// (its queue position is computed when the display is assembled) and the
// restaurant and queue sequence it was queued with.
type StoredTicket struct {
	TicketView
	RestaurantID string `json:"restaurantId"`
	QueueSeq     uint64 `json:"queueSeq"`
}

// loadScript reads a display's parts in one atomic step: the head, then
// the stored tickets in queue order. The ticket keys are derived from the
// queue's members (one Redis server holds a keyspace).
var loadScript = redis.NewScript(`
local head = redis.call('GET', KEYS[1])
if not head then return {} end
local out = {head}
local ids = redis.call('ZRANGE', KEYS[2], 0, -1)
local keys = {}
for i, id in ipairs(ids) do keys[i] = ARGV[1] .. id end
for i = 1, #keys, 512 do
  local part = redis.call('MGET', unpack(keys, i, math.min(i + 511, #keys)))
  for _, v in ipairs(part) do out[#out + 1] = v end
end
return out
`)

// ErrNoDisplay: the restaurant has had no kitchen event yet.
var ErrNoDisplay = errors.New("no kitchen display yet")

// LoadDisplay reads and assembles a restaurant's display: the head's
// chefs, counts and version, and the tickets in queue order with their
// queue positions (remakes first, then queue order, as the scheduler
// assigns chefs). It returns ErrNoDisplay before the first kitchen event.
func LoadDisplay(ctx context.Context, rdb redis.Scripter, keyspace, restaurantID string) (KitchenDisplay, error) {
	res, err := loadScript.Run(ctx, rdb, []string{HeadKey(keyspace, restaurantID), QueueKey(keyspace, restaurantID)}, ticketPrefix(keyspace)).Slice()
	if err != nil {
		return KitchenDisplay{}, fmt.Errorf("kitchen display %s: %w", restaurantID, err)
	}
	if len(res) == 0 {
		return KitchenDisplay{}, ErrNoDisplay
	}
	head, _ := res[0].(string)
	var h StoredHead
	if err := json.Unmarshal([]byte(head), &h); err != nil {
		return KitchenDisplay{}, fmt.Errorf("kitchen display %s: head is corrupt: %w", restaurantID, err)
	}
	tickets := make([]StoredTicket, 0, len(res)-1)
	for _, v := range res[1:] {
		s, ok := v.(string)
		if !ok {
			continue // removed with its queue entry in the same commit: never seen apart
		}
		var t StoredTicket
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			return KitchenDisplay{}, fmt.Errorf("kitchen display %s: ticket is corrupt: %w", restaurantID, err)
		}
		tickets = append(tickets, t)
	}
	return Assemble(h, tickets), nil
}

// Assemble builds the display from its stored parts: the head's chefs,
// counts and version, and the tickets in queue order with their queue
// positions.
func Assemble(h StoredHead, tickets []StoredTicket) KitchenDisplay {
	slices.SortStableFunc(tickets, func(a, b StoredTicket) int { return cmp.Compare(a.QueueSeq, b.QueueSeq) })
	d := h.Display
	d.Tickets = make([]TicketView, len(tickets))
	for i, t := range tickets {
		d.Tickets[i] = t.TicketView
	}
	if d.Chefs == nil {
		d.Chefs = []ChefView{}
	}
	setQueuePositions(d.Tickets)
	return d
}

// setQueuePositions numbers the Queued tickets (given in queue order):
// remakes first, then the others; every other ticket has none.
func setQueuePositions(ts []TicketView) {
	pos := 0
	for pass := range 2 {
		for i := range ts {
			t := &ts[i]
			switch {
			case t.Stage != StageQueued:
				t.QueuePosition = 0
			case t.Remake == (pass == 0):
				pos++
				t.QueuePosition = pos
			}
		}
	}
}

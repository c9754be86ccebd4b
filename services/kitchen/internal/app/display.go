// Package app is the kitchen service's application layer: the reactions to
// other contexts' events (durable consumers), the scheduler that moves
// tickets through the kitchen, the chef-break command, the kitchen-display
// projector and the NATS micro endpoints.
package app

import (
	"cmp"
	"slices"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/services/kitchen/kitchenapi"
)

// restaurantOf returns the restaurant a kitchen event belongs to ("" for a
// withdrawal recorded before the kitchen saw the order).
func restaurantOf(e events.Event) string {
	switch e := e.(type) {
	case events.TicketQueued:
		return e.RestaurantID
	case events.TicketPreparationStarted:
		return e.RestaurantID
	case events.TicketBakingStarted:
		return e.RestaurantID
	case events.TicketQualityCheckStarted:
		return e.RestaurantID
	case events.TicketQualityCheckFailed:
		return e.RestaurantID
	case events.TicketReady:
		return e.RestaurantID
	case events.TicketWithdrawn:
		return e.RestaurantID
	case events.ChefBreakStarted:
		return e.RestaurantID
	case events.ChefBreakEnded:
		return e.RestaurantID
	}
	return ""
}

// displayParts is where folding an event finds and stores a display's
// tickets (ADR 0023): the projector's transaction, or a map in tests.
type displayParts interface {
	// ticket returns the stored ticket of an order on the display.
	ticket(orderID string) (*kitchenapi.StoredTicket, bool, error)
	// put stores a ticket; added says it is new to the display (it joins
	// the queue's index).
	put(t *kitchenapi.StoredTicket, added bool)
	// remove takes a ticket off the display.
	remove(t *kitchenapi.StoredTicket)
}

// applyToDisplay folds one kitchen event of aggregate id (an order or a
// chef) into restaurant rid's display: the head h and the tickets in
// parts. It reports whether the display changed. r is the restaurant in
// the catalogue (nil if unknown) and supplies the chefs' names and
// capacities. It touches the event's ticket and the head only (and, when
// a ticket becomes Ready, the oldest Ready one it replaces), so its cost
// does not grow with the queue.
func applyToDisplay(h *kitchenapi.StoredHead, parts displayParts, r *catalog.Restaurant, rid, id string, ev events.Event, seq uint64, at time.Time) (bool, error) {
	d := &h.Display
	switch e := ev.(type) {
	case events.ChefBreakStarted, events.ChefBreakEnded:
		_, onBreak := ev.(events.ChefBreakStarted)
		j := slices.IndexFunc(d.Chefs, func(c kitchenapi.ChefView) bool { return c.ChefID == id })
		if j < 0 {
			return false, nil // not a chef of the catalogue
		}
		d.Chefs[j].OnBreak = onBreak
	case events.TicketQueued:
		if _, ok, err := parts.ticket(id); err != nil || ok {
			return false, err
		}
		t := &kitchenapi.StoredTicket{RestaurantID: rid, QueueSeq: seq, TicketView: kitchenapi.TicketView{
			OrderID: id, Stage: kitchenapi.StageQueued, Lines: lineViews(e.Lines), Attempt: 1, QueuedAt: at, StageStartedAt: at,
		}}
		count(d, &t.TicketView, 1)
		parts.put(t, true)
	default:
		t, ok, err := parts.ticket(id)
		if err != nil || !ok {
			return false, err
		}
		tv := &t.TicketView
		before := *tv
		switch e := ev.(type) {
		case events.TicketPreparationStarted:
			setStage(tv, kitchenapi.StagePreparing, at, &e.DueAt)
			tv.ChefID, tv.Attempt = e.ChefID, max(e.Attempt, 1)
		case events.TicketBakingStarted:
			setStage(tv, kitchenapi.StageBaking, at, &e.DueAt)
		case events.TicketQualityCheckStarted:
			setStage(tv, kitchenapi.StageQualityCheck, at, &e.DueAt)
		case events.TicketQualityCheckFailed:
			setStage(tv, kitchenapi.StageQueued, at, nil)
			tv.ChefID, tv.Remake, tv.Attempt = "", true, max(tv.Attempt, e.Attempt)+1
		case events.TicketReady:
			setStage(tv, kitchenapi.StageReady, at, nil)
		case events.TicketWithdrawn:
			count(d, tv, -1)
			h.Ready = slices.DeleteFunc(h.Ready, func(ref kitchenapi.ReadyRef) bool { return ref.OrderID == id })
			parts.remove(t)
			finish(d, r, seq, at)
			return true, nil
		default:
			return false, nil
		}
		count(d, &before, -1)
		count(d, tv, 1)
		parts.put(t, false)
		if tv.Stage == kitchenapi.StageReady {
			if err := keepRecentReady(h, parts, kitchenapi.ReadyRef{OrderID: id, At: at, QueueSeq: t.QueueSeq}); err != nil {
				return false, err
			}
		}
	}
	finish(d, r, seq, at)
	return true, nil
}

// count adds delta tickets of t's stage to the counts (and to its chef's
// active tickets while it is Preparing).
func count(d *kitchenapi.KitchenDisplay, t *kitchenapi.TicketView, delta int) {
	switch t.Stage {
	case kitchenapi.StageQueued:
		d.Counts.Queued += delta
	case kitchenapi.StagePreparing:
		d.Counts.Preparing += delta
		if j := slices.IndexFunc(d.Chefs, func(c kitchenapi.ChefView) bool { return c.ChefID == t.ChefID }); j >= 0 {
			d.Chefs[j].ActiveTickets += delta
		}
	case kitchenapi.StageBaking:
		d.Counts.Baking += delta
	case kitchenapi.StageQualityCheck:
		d.Counts.QualityCheck += delta
	case kitchenapi.StageReady:
		d.Counts.Ready += delta
	}
}

func setStage(t *kitchenapi.TicketView, stage string, at time.Time, due *time.Time) {
	t.Stage, t.StageStartedAt = stage, at
	t.DueAt = nil
	if due != nil {
		d := due.UTC()
		t.DueAt = &d
	}
}

func lineViews(lines []events.OrderLine) []kitchenapi.LineView {
	out := make([]kitchenapi.LineView, len(lines))
	for i, l := range lines {
		tops := l.Toppings
		if tops == nil {
			tops = []string{}
		}
		out[i] = kitchenapi.LineView{PizzaType: l.PizzaType, Size: l.Size, Toppings: tops, Quantity: l.Quantity}
	}
	return out
}

// keepRecentReady records a ticket that became Ready and takes the oldest
// Ready tickets beyond ReadyTicketsKept off the display: the kitchen does
// not learn when a driver picks an order up. Oldest by the time they
// became Ready; ties by queue order.
func keepRecentReady(h *kitchenapi.StoredHead, parts displayParts, ref kitchenapi.ReadyRef) error {
	h.Ready = slices.DeleteFunc(h.Ready, func(r kitchenapi.ReadyRef) bool { return r.OrderID == ref.OrderID })
	i, _ := slices.BinarySearchFunc(h.Ready, ref, func(a, b kitchenapi.ReadyRef) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return cmp.Compare(a.QueueSeq, b.QueueSeq)
	})
	h.Ready = slices.Insert(h.Ready, i, ref)
	for len(h.Ready) > kitchenapi.ReadyTicketsKept {
		oldest := h.Ready[0]
		h.Ready = h.Ready[1:]
		t, ok, err := parts.ticket(oldest.OrderID)
		if err != nil {
			return err
		}
		if ok {
			count(&h.Display, &t.TicketView, -1)
			parts.remove(t)
		}
	}
	h.Ready = slices.Clip(h.Ready)
	return nil
}

// finish refreshes the chefs from the catalogue (names and capacities;
// break state and active tickets kept) and stamps the display's version.
func finish(d *kitchenapi.KitchenDisplay, r *catalog.Restaurant, seq uint64, at time.Time) {
	if r != nil {
		old := d.Chefs
		chefs := make([]kitchenapi.ChefView, 0, len(r.Chefs))
		for _, c := range r.Chefs {
			v := kitchenapi.ChefView{ChefID: c.ID, Name: c.Name, Capacity: kitchenapi.ChefCapacity(c)}
			if j := slices.IndexFunc(old, func(o kitchenapi.ChefView) bool { return o.ChefID == c.ID }); j >= 0 {
				v.OnBreak, v.ActiveTickets = old[j].OnBreak, old[j].ActiveTickets
			}
			chefs = append(chefs, v)
		}
		d.Chefs = chefs
	}
	if d.Chefs == nil {
		d.Chefs = []kitchenapi.ChefView{}
	}
	d.Tickets = nil // stored apart (HeadKey)
	d.Version = seq
	d.LastUpdated = at
}

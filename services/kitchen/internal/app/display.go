// Package app is the kitchen service's application layer: the reactions to
// other contexts' events (durable consumers), the scheduler that moves
// tickets through the kitchen, the chef-break command, the kitchen-display
// projector and the NATS micro endpoints.
package app

import (
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

// applyToDisplay folds one kitchen event of aggregate id (an order or a
// chef) into a restaurant's display and reports whether it changed. r is
// the restaurant in the catalogue (nil if unknown) and supplies the chefs'
// names and capacities.
func applyToDisplay(d *kitchenapi.KitchenDisplay, r *catalog.Restaurant, id string, ev events.Event, seq uint64, at time.Time) bool {
	i := slices.IndexFunc(d.Tickets, func(t kitchenapi.TicketView) bool { return t.OrderID == id })
	var t *kitchenapi.TicketView
	if i >= 0 {
		t = &d.Tickets[i]
	}
	switch e := ev.(type) {
	case events.TicketQueued:
		if t != nil {
			return false
		}
		d.Tickets = append(d.Tickets, kitchenapi.TicketView{
			OrderID: id, Stage: kitchenapi.StageQueued, Lines: lineViews(e.Lines), Attempt: 1, QueuedAt: at, StageStartedAt: at,
		})
	case events.ChefBreakStarted, events.ChefBreakEnded:
		_, onBreak := ev.(events.ChefBreakStarted)
		j := slices.IndexFunc(d.Chefs, func(c kitchenapi.ChefView) bool { return c.ChefID == id })
		if j < 0 {
			return false // not a chef of the catalogue
		}
		d.Chefs[j].OnBreak = onBreak
	default:
		if t == nil {
			return false
		}
		switch e := ev.(type) {
		case events.TicketPreparationStarted:
			setStage(t, kitchenapi.StagePreparing, at, &e.DueAt)
			t.ChefID, t.Attempt = e.ChefID, max(e.Attempt, 1)
		case events.TicketBakingStarted:
			setStage(t, kitchenapi.StageBaking, at, &e.DueAt)
		case events.TicketQualityCheckStarted:
			setStage(t, kitchenapi.StageQualityCheck, at, &e.DueAt)
		case events.TicketQualityCheckFailed:
			setStage(t, kitchenapi.StageQueued, at, nil)
			t.ChefID, t.Remake, t.Attempt = "", true, max(t.Attempt, e.Attempt)+1
		case events.TicketReady:
			setStage(t, kitchenapi.StageReady, at, nil)
			trimReady(d)
		case events.TicketWithdrawn:
			d.Tickets = slices.Delete(d.Tickets, i, i+1)
		default:
			return false
		}
	}
	finish(d, r, seq, at)
	return true
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

// trimReady keeps the ReadyTicketsKept most recent Ready tickets.
func trimReady(d *kitchenapi.KitchenDisplay) {
	var ready []int
	for i, t := range d.Tickets {
		if t.Stage == kitchenapi.StageReady {
			ready = append(ready, i)
		}
	}
	excess := len(ready) - kitchenapi.ReadyTicketsKept
	if excess <= 0 {
		return
	}
	// Oldest first by the time they became ready; ties keep queue order.
	slices.SortStableFunc(ready, func(a, b int) int { return d.Tickets[a].StageStartedAt.Compare(d.Tickets[b].StageStartedAt) })
	drop := map[int]bool{}
	for _, i := range ready[:excess] {
		drop[i] = true
	}
	kept := d.Tickets[:0]
	for i, t := range d.Tickets {
		if !drop[i] {
			kept = append(kept, t)
		}
	}
	d.Tickets = kept
}

// finish recomputes what derives from the tickets: the chefs (catalogue
// names and capacities, break state kept, tickets in preparation), the
// counts per stage and the queue positions (remakes first, then queue
// order, as the scheduler assigns them).
func finish(d *kitchenapi.KitchenDisplay, r *catalog.Restaurant, seq uint64, at time.Time) {
	if r != nil {
		onBreak := map[string]bool{}
		for _, c := range d.Chefs {
			onBreak[c.ChefID] = c.OnBreak
		}
		chefs := make([]kitchenapi.ChefView, 0, len(r.Chefs))
		for _, c := range r.Chefs {
			chefs = append(chefs, kitchenapi.ChefView{ChefID: c.ID, Name: c.Name, OnBreak: onBreak[c.ID], Capacity: kitchenapi.ChefCapacity(c)})
		}
		d.Chefs = chefs
	}
	if d.Chefs == nil {
		d.Chefs = []kitchenapi.ChefView{}
	}
	for j := range d.Chefs {
		d.Chefs[j].ActiveTickets = 0
	}
	d.Counts = kitchenapi.StageCounts{}
	pos := 0
	for pass := 0; pass < 2; pass++ {
		for i := range d.Tickets {
			t := &d.Tickets[i]
			if t.Stage == kitchenapi.StageQueued && t.Remake == (pass == 0) {
				pos++
				t.QueuePosition = pos
			}
		}
	}
	for i := range d.Tickets {
		t := &d.Tickets[i]
		switch t.Stage {
		case kitchenapi.StageQueued:
			d.Counts.Queued++
		case kitchenapi.StagePreparing:
			d.Counts.Preparing++
			if j := slices.IndexFunc(d.Chefs, func(c kitchenapi.ChefView) bool { return c.ChefID == t.ChefID }); j >= 0 {
				d.Chefs[j].ActiveTickets++
			}
		case kitchenapi.StageBaking:
			d.Counts.Baking++
		case kitchenapi.StageQualityCheck:
			d.Counts.QualityCheck++
		case kitchenapi.StageReady:
			d.Counts.Ready++
		}
		if t.Stage != kitchenapi.StageQueued {
			t.QueuePosition = 0
		}
	}
	if d.Tickets == nil {
		d.Tickets = []kitchenapi.TicketView{}
	}
	d.Version = seq
	d.LastUpdated = at
}

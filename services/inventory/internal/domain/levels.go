// Package domain is the stock aggregate of one restaurant: pure decisions
// (validate, then return the events that record the decision) and pure
// application of events to state. No I/O and no clock.
package domain

import (
	"maps"
	"slices"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// ThresholdPercent of the opening stock is the low-stock threshold.
const ThresholdPercent = 20

// Threshold returns the low-stock threshold for an opening stock: 20%,
// rounded up.
func Threshold(opening int64) int64 {
	if opening <= 0 {
		return 0
	}
	return (opening*ThresholdPercent + 99) / 100
}

// Level is the stock of one ingredient, in units.
type Level struct {
	OnHand    int64 // physically in the restaurant
	Reserved  int64 // set aside for orders whose preparation has not started
	Threshold int64 // the ingredient is low when available <= Threshold
	Alert     bool  // a low-stock alert is open
}

// Available is what new orders can take.
func (l Level) Available() int64 { return l.OnHand - l.Reserved }

// Low reports whether the available units are at or below the threshold.
func (l Level) Low() bool { return l.Available() <= l.Threshold }

// Levels is the stock of every ingredient of a restaurant.
type Levels map[string]Level

// Clone returns an independent copy.
func (ls Levels) Clone() Levels { return maps.Clone(ls) }

// Ingredients returns the ingredient names, sorted.
func (ls Levels) Ingredients() []string { return slices.Sorted(maps.Keys(ls)) }

// Apply folds one event into the levels: the stock arithmetic of the
// inventory context. The aggregate and the read model both use it. It never
// fails; events that move no stock leave the levels unchanged.
//
//   - stock_initialized sets on-hand units and thresholds;
//   - stock_reserved moves units from available to reserved;
//   - stock_consumed takes reserved units out of on-hand (available is unchanged);
//   - stock_released returns reserved units to available;
//   - stock_wasted moves nothing (the units left on-hand when consumed);
//   - stock_restocked adds on-hand units, stock_adjusted sets them; both
//     close an open alert when available ends above the threshold;
//   - stock_running_low opens the alert.
func (ls Levels) Apply(e events.Event) {
	switch e := e.(type) {
	case events.StockInitialized:
		clear(ls)
		for ing, n := range e.OnHand {
			ls.update(ing, func(l *Level) { l.OnHand = n })
		}
		for ing, t := range e.Thresholds {
			ls.update(ing, func(l *Level) { l.Threshold = t })
		}
	case events.StockReserved:
		for ing, n := range e.Ingredients {
			ls.update(ing, func(l *Level) { l.Reserved += n })
		}
	case events.StockConsumed:
		for ing, n := range e.Ingredients {
			ls.update(ing, func(l *Level) { l.OnHand -= n; l.Reserved -= n })
		}
	case events.StockReleased:
		for ing, n := range e.Ingredients {
			ls.update(ing, func(l *Level) { l.Reserved -= n })
		}
	case events.StockRestocked:
		for ing, n := range e.Quantities {
			ls.update(ing, func(l *Level) { l.OnHand += n; l.closeAlertIfAbove() })
		}
	case events.StockAdjusted:
		for ing, n := range e.OnHand {
			ls.update(ing, func(l *Level) { l.OnHand = n; l.closeAlertIfAbove() })
		}
	case events.StockRunningLow:
		ls.update(e.Ingredient, func(l *Level) { l.Alert = true })
	}
}

func (ls Levels) update(ing string, f func(*Level)) {
	l := ls[ing]
	f(&l)
	ls[ing] = l
}

func (l *Level) closeAlertIfAbove() {
	if l.Alert && !l.Low() {
		l.Alert = false
	}
}

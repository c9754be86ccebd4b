// Package audit checks the order log's invariants by refolding every order
// from its events: every order starts with its placement, moves only along
// the state machine, and is never delivered without having been picked up.
// `pizza replay --verify` runs it over the whole log.
package audit

import (
	"fmt"
	"sort"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/orders/internal/domain"
)

// Violation is one broken invariant, where it happened.
type Violation struct {
	Stream      string `json:"stream"`
	Seq         uint64 `json:"seq"`
	AggregateID string `json:"aggregateId"`
	Rule        string `json:"rule"`
	Detail      string `json:"detail"`
}

func (v Violation) String() string {
	return fmt.Sprintf("%s seq %d %s: %s: %s", v.Stream, v.Seq, v.AggregateID, v.Rule, v.Detail)
}

// Rules checked.
const (
	RuleFirstEvent  = "order-starts-with-placement"
	RuleTransition  = "transition-allowed"
	RulePickupFirst = "no-delivery-without-pickup"
	RuleNotTerminal = "no-change-after-the-end"
)

// OrderChecker folds ORDERS events and collects violations.
type OrderChecker struct {
	orders     map[string]*orderState
	violations []Violation
}

type orderState struct {
	order    *domain.Order
	pickedUp bool
}

// NewOrderChecker returns an empty checker.
func NewOrderChecker() *OrderChecker { return &OrderChecker{orders: map[string]*orderState{}} }

// Add folds one ORDERS event, in stream order.
func (c *OrderChecker) Add(rec eventstore.Record) {
	id := rec.Envelope.AggregateID
	st, ok := c.orders[id]
	violate := func(rule, format string, args ...any) {
		c.violations = append(c.violations, Violation{Stream: rec.Stream, Seq: rec.Seq, AggregateID: id, Rule: rule, Detail: fmt.Sprintf(format, args...)})
	}
	if !ok {
		if _, placed := rec.Event.(events.OrderPlaced); !placed {
			violate(RuleFirstEvent, "first event is %s", rec.Envelope.Type)
		}
		st = &orderState{order: domain.New(id)}
		c.orders[id] = st
	}
	before := st.order.Status()
	switch rec.Event.(type) {
	case events.OrderPersonalDataErased, events.OrderStatusOverridden:
		// Annotations: an erasure may come at any time; an override note
		// follows the transition it explains (possibly to an end state).
		st.order.Apply(rec.Event, rec.Envelope.OccurredAt)
		return
	case events.OrderStuckDetected:
		if before.Terminal() {
			violate(RuleNotTerminal, "%s after the order ended %s", rec.Envelope.Type, before)
		}
		st.order.Apply(rec.Event, rec.Envelope.OccurredAt)
		return
	case events.OrderPickedUp:
		st.pickedUp = true
	case events.OrderDelivered:
		if !st.pickedUp {
			violate(RulePickupFirst, "delivered but never picked up")
		}
	}
	st.order.Apply(rec.Event, rec.Envelope.OccurredAt)
	after := st.order.Status()
	if before == "" {
		// Created, or Validated for a placement that validated the order
		// too (order_placed.v3).
		if placed, ok := rec.Event.(events.OrderPlaced); !ok || after != domain.Status(placed.Status()) {
			violate(RuleFirstEvent, "placement left status %s", after)
		}
		return
	}
	if !domain.CanTransition(before, after) {
		violate(RuleTransition, "%s → %s (%s)", before, after, rec.Envelope.Type)
	}
}

// Violations returns what was found, in log order.
func (c *OrderChecker) Violations() []Violation {
	out := append([]Violation(nil), c.violations...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// Summary counts the orders by status: every order must be terminal or in progress.
func (c *OrderChecker) Summary() (orders int, byStatus map[string]int) {
	byStatus = map[string]int{}
	for _, st := range c.orders {
		byStatus[string(st.order.Status())]++
	}
	return len(c.orders), byStatus
}

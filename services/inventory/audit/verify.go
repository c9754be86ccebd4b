// Package audit checks the inventory log's invariant by refolding every
// restaurant's stock: on-hand and available units never go negative.
// `pizza replay --verify` runs it over the whole log.
package audit

import (
	"fmt"

	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/services/inventory/internal/domain"
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

// RuleNonNegative is the stock invariant.
const RuleNonNegative = "stock-never-negative"

// StockChecker folds INVENTORY events per restaurant.
type StockChecker struct {
	stock      map[string]domain.Levels
	violations []Violation
}

// NewStockChecker returns an empty checker.
func NewStockChecker() *StockChecker { return &StockChecker{stock: map[string]domain.Levels{}} }

// Add folds one INVENTORY event, in stream order, and checks every level.
func (c *StockChecker) Add(rec eventstore.Record) {
	id := rec.Envelope.AggregateID
	levels, ok := c.stock[id]
	if !ok {
		levels = domain.Levels{}
		c.stock[id] = levels
	}
	levels.Apply(rec.Event)
	for _, ing := range levels.Ingredients() {
		l := levels[ing]
		if l.OnHand < 0 || l.Available() < 0 {
			c.violations = append(c.violations, Violation{Stream: rec.Stream, Seq: rec.Seq, AggregateID: id, Rule: RuleNonNegative,
				Detail: fmt.Sprintf("%s on hand %d, available %d after %s", ing, l.OnHand, l.Available(), rec.Envelope.Type)})
		}
	}
}

// Violations returns what was found, in log order.
func (c *StockChecker) Violations() []Violation { return c.violations }

package domain

import (
	"errors"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
)

// Chef errors.
var (
	ErrAlreadyOnBreak = errors.New("the chef is already on break")
	ErrNotOnBreak     = errors.New("the chef is not on break")
)

// Chef is a chef's availability, rebuilt from the chef's break events. The
// chef's name and capacity are catalogue data, not part of the aggregate.
type Chef struct {
	id           string
	restaurantID string
	onBreak      bool
	since        time.Time
}

// NewChef returns the aggregate of a chef of a restaurant (working, no events yet).
func NewChef(id, restaurantID string) *Chef { return &Chef{id: id, restaurantID: restaurantID} }

func (c *Chef) ID() string           { return c.id }
func (c *Chef) RestaurantID() string { return c.restaurantID }
func (c *Chef) OnBreak() bool        { return c.onBreak }
func (c *Chef) Since() time.Time     { return c.since }

// SetBreak starts (onBreak) or ends a break. A chef who starts a break
// finishes the ticket in hand but takes no new one.
func (c *Chef) SetBreak(onBreak bool) ([]events.Event, error) {
	switch {
	case onBreak && c.onBreak:
		return nil, ErrAlreadyOnBreak
	case !onBreak && !c.onBreak:
		return nil, ErrNotOnBreak
	case onBreak:
		return []events.Event{events.ChefBreakStarted{RestaurantID: c.restaurantID}}, nil
	default:
		return []events.Event{events.ChefBreakEnded{RestaurantID: c.restaurantID}}, nil
	}
}

// Apply changes the chef by one event; it never fails.
func (c *Chef) Apply(e events.Event, at time.Time) {
	switch e.(type) {
	case events.ChefBreakStarted:
		c.onBreak, c.since = true, at
	case events.ChefBreakEnded:
		c.onBreak, c.since = false, at
	}
}

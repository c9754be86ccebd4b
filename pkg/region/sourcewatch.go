package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SourceWatch reports a region whose part of ORDERS_GLOBAL has fallen
// behind. nats-server resumes a source after a cut by itself, but on a
// loaded machine a region's source was seen to resume without the events
// its region stored during the cut, once for minutes with heartbeats
// flowing (nats-server 2.15.2). The watch compares, per region, the last
// ORDERS sequence GLOBAL has stored (from the Nats-Stream-Source header of
// its last message from that region) with the region's own last order
// event, and logs a warning when GLOBAL stays behind without progress for
// Stall while the region answers. It does not repair: repositioning the
// region's source consumer from outside races nats-server's own recovery
// and was seen to skip events (ADR 0020).
type SourceWatch struct {
	JS       jetstream.JetStream // a connection to the GLOBAL account
	Topology Topology
	Interval time.Duration // between checks; 10 s when zero
	Stall    time.Duration // how long a region may stay behind without progress; 30 s when zero
	Log      *slog.Logger
	// Active, when set, is asked before each round: only the process that
	// writes the view reports (one report per stall).
	Active func() bool
	// Reseed, when positive, is how long a stall may last before the watch
	// re-seeds the region's source (Reseed method): past nats-server's own
	// retry backoff (up to 2 minutes), nothing else will move it.
	Reseed time.Duration

	mu      sync.Mutex
	state   map[string]*watchState
	reseeds int
	last    []SourceStatus
}

// Statuses is what the last check saw of every region (nil before the
// first check, and while this process does not write the view).
func (g *SourceWatch) Statuses() []SourceStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.last)
}

// Reseeds counts the sources this watch re-seeded.
func (g *SourceWatch) Reseeds() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reseeds
}

type watchState struct {
	stored   uint64    // GLOBAL's last stored sequence of the region at the last check
	since    time.Time // when GLOBAL was first seen behind at that sequence
	reported bool
}

// SourceStatus is one region's side of ORDERS_GLOBAL at one check.
type SourceStatus struct {
	Region     string
	Stored     uint64        // the region's last ORDERS sequence GLOBAL holds
	RegionSeq  uint64        // the region's last order event
	Reachable  bool          // the region answered
	StalledFor time.Duration // how long GLOBAL has stayed behind at Stored
	Reseeded   bool          // this check re-seeded the region's source
}

// Behind reports whether GLOBAL lacks some of the region's order events.
func (s SourceStatus) Behind() bool { return s.Reachable && s.Stored < s.RegionSeq }

// Run checks every Interval until ctx ends.
func (g *SourceWatch) Run(ctx context.Context) error {
	interval := g.Interval
	if interval <= 0 {
		interval = 10 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if g.Active != nil && !g.Active() {
			g.mu.Lock()
			g.state, g.last = nil, nil // a new writer starts its own clocks
			g.mu.Unlock()
			continue
		}
		st, err := g.Check(ctx)
		if err != nil && ctx.Err() == nil {
			g.logger().Warn("chain-wide source check failed", "err", err)
		}
		if err == nil {
			g.mu.Lock()
			g.last = st
			g.mu.Unlock()
		}
	}
}

// Check looks at every region once, and warns about a region GLOBAL has
// stayed behind for Stall.
func (g *SourceWatch) Check(ctx context.Context) ([]SourceStatus, error) {
	stall := g.Stall
	if stall <= 0 {
		stall = 30 * time.Second
	}
	gst, err := g.JS.Stream(ctx, GlobalOrdersStream)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", GlobalOrdersStream, err)
	}
	out := make([]SourceStatus, 0, len(g.Topology.Regions))
	for _, r := range g.Topology.Names() {
		st := SourceStatus{Region: r}
		st.Stored, err = storedFrom(ctx, gst, r)
		if err != nil {
			return out, err
		}
		seq, err := g.regionLast(ctx, r)
		if err != nil {
			// Cut off, or the region is down: nothing to compare with, and
			// a stall is only counted while the region answers.
			g.forget(r)
			g.logger().Debug("region not reachable for the source check", "region", r, "err", err)
			out = append(out, st)
			continue
		}
		st.RegionSeq, st.Reachable = seq, true
		if !st.Behind() {
			g.forget(r)
			out = append(out, st)
			continue
		}
		var report bool
		st.StalledFor, report = g.stalledFor(r, st.Stored, stall)
		if report {
			g.logger().Warn("chain-wide view is behind a region and not catching up",
				"region", r, "stored_seq", st.Stored, "region_seq", st.RegionSeq, "stalled_for", st.StalledFor)
		}
		if g.Reseed > 0 && st.StalledFor >= g.Reseed {
			g.logger().Warn("re-seeding a stalled chain-wide source", "region", r, "stored_seq", st.Stored, "region_seq", st.RegionSeq, "stalled_for", st.StalledFor)
			if err := g.ReseedSource(ctx, r); err != nil {
				return append(out, st), err
			}
			g.forget(r) // a fresh stall clock for the re-seeded source
			g.mu.Lock()
			g.reseeds++
			g.mu.Unlock()
			st.Reseeded = true
		}
		out = append(out, st)
	}
	return out, nil
}

// stalledFor records GLOBAL's position for the region, says how long it
// has stayed there while behind, and whether that is a new stall to report.
func (g *SourceWatch) stalledFor(region string, stored uint64, stall time.Duration) (time.Duration, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == nil {
		g.state = map[string]*watchState{}
	}
	s := g.state[region]
	if s == nil || s.stored != stored {
		g.state[region] = &watchState{stored: stored, since: time.Now()}
		return 0, false
	}
	d := time.Since(s.since)
	if d >= stall && !s.reported {
		s.reported = true
		return d, true
	}
	return d, false
}

func (g *SourceWatch) forget(region string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.state, region)
}

func (g *SourceWatch) logger() *slog.Logger {
	if g.Log != nil {
		return g.Log
	}
	return slog.Default()
}

// storedFrom is the region's last ORDERS sequence in ORDERS_GLOBAL: the
// sequence nats-server wrote into the Nats-Stream-Source header of the
// last message sourced from it ("<source> <seq> ..."); 0 when none.
func storedFrom(ctx context.Context, gst jetstream.Stream, region string) (uint64, error) {
	msg, err := gst.GetLastMsgForSubject(ctx, region+"."+events.Orders.Wildcard())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%s: last message of %s: %w", GlobalOrdersStream, region, err)
	}
	return SourcedSequence(msg.Header)
}

// SourcedSequence reads the source stream's sequence from a sourced
// message's Nats-Stream-Source header.
func SourcedSequence(h nats.Header) (uint64, error) {
	v := h.Get("Nats-Stream-Source")
	fields := strings.Fields(v)
	if len(fields) < 2 {
		return 0, fmt.Errorf("no source sequence in Nats-Stream-Source %q", v)
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("source sequence in Nats-Stream-Source %q: %w", v, err)
	}
	return seq, nil
}

// regionLast asks the region (through GLOBAL's import of its message-get
// API) for the sequence of its last order event; 0 when it has none.
func (g *SourceWatch) regionLast(ctx context.Context, region string) (uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": events.Orders.Wildcard()})
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	msg, err := g.JS.Conn().RequestWithContext(rctx, APIPrefix(region)+".STREAM.MSG.GET."+events.Orders.Stream, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("region %s: last order event: %w", region, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == 10037 { // no message found
			return 0, nil
		}
		return 0, fmt.Errorf("region %s: last order event: %s (%d)", region, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return 0, fmt.Errorf("region %s: last order event: empty answer", region)
	}
	return resp.Message.Seq, nil
}

// ReseedSource removes the region's source from ORDERS_GLOBAL and adds it
// back. nats-server then drops everything it held about the source and
// starts it again from its own record of the last sequence it stored from
// it (the stream's source index), resetting the region's durable source
// consumer to its ack floor: what is stored is not stored again, and what
// is missing is read. It is the repair for a source whose state machine
// has stopped (ADR 0020).
func (g *SourceWatch) ReseedSource(ctx context.Context, region string) error {
	st, err := g.JS.Stream(ctx, GlobalOrdersStream)
	if err != nil {
		return fmt.Errorf("%s: %w", GlobalOrdersStream, err)
	}
	cfg := st.CachedInfo().Config
	without := cfg
	without.Sources = nil
	for _, src := range cfg.Sources {
		if src.External != nil && src.External.APIPrefix == APIPrefix(region) {
			continue
		}
		without.Sources = append(without.Sources, src)
	}
	if len(without.Sources) == len(cfg.Sources) {
		return fmt.Errorf("%s has no source for region %s", GlobalOrdersStream, region)
	}
	if _, err := g.JS.UpdateStream(ctx, without); err != nil {
		return fmt.Errorf("%s without the source of %s: %w", GlobalOrdersStream, region, err)
	}
	// The source must come back: retry for as long as ctx allows.
	for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		_, err := g.JS.UpdateStream(ctx, cfg)
		if err == nil {
			return nil
		}
		g.logger().Warn("could not add a chain-wide source back yet; retrying", "region", region, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: source of %s removed and not added back: %w", GlobalOrdersStream, region, ctx.Err())
		case <-t.C:
		}
	}
}

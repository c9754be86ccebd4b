package region

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SourceWatch keeps ORDERS_GLOBAL complete. nats-server resumes a source
// after a cut by itself, but its durable-source recovery can lose events
// (nats-server 2.15.2): when it resets the region's source consumer, the
// answer it reads back can already count messages the consumer pushed
// before the sourcing stream subscribed again; the source then takes them
// as stored, and its next flow-control reply acknowledges them, so the
// consumer never sends them again. The source reports lag 0 and keeps
// receiving heartbeats while GLOBAL lacks those events for good.
//
// The watch compares, per region, the last ORDERS sequence GLOBAL has
// stored (from the Nats-Stream-Source header of its last message from that
// region) with the region's own last order event and with the ack floor of
// the region's source consumer. An ack floor past what GLOBAL stored, seen
// on two checks in a row, is that loss: the watch repairs the source at
// once (ReseedSource). A region GLOBAL stays behind without progress for
// Stall is logged, and re-seeded after Reseed (ADR 0020).
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
	scans   map[string]*scanState
	reseeds int
	holes   int
	last    []SourceStatus
}

// scanState is how far the watch has checked a region's part of GLOBAL
// for holes.
type scanState struct {
	gseq    uint64 // the last GLOBAL sequence of the region checked
	sourced uint64 // the region's sequence of that message
}

// Statuses is what the last check saw of every region (nil before the
// first check, and while this process does not write the view).
func (g *SourceWatch) Statuses() []SourceStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.last)
}

// Reseeds counts the sources this watch repaired (re-seeded or rewound).
func (g *SourceWatch) Reseeds() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reseeds
}

// Holes counts the holes this watch found in GLOBAL (and rewound).
func (g *SourceWatch) Holes() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holes
}

type watchState struct {
	stored   uint64    // GLOBAL's last stored sequence of the region at the last check
	since    time.Time // when GLOBAL was first seen behind at that sequence
	reported bool
	lost     bool // the last check saw the consumer's ack floor past stored
}

// SourceStatus is one region's side of ORDERS_GLOBAL at one check.
type SourceStatus struct {
	Region     string
	Stored     uint64        // the region's last ORDERS sequence GLOBAL holds
	RegionSeq  uint64        // the region's last order event
	Reachable  bool          // the region answered
	StalledFor time.Duration // how long GLOBAL has stayed behind at Stored
	// AckFloor is the last region sequence the region's source consumer
	// holds as stored by GLOBAL (read only while GLOBAL is behind).
	AckFloor uint64
	// Missing is the first region sequence of a hole this check found:
	// GLOBAL holds later events of the region but not this one, which the
	// region still has. The watch then rewinds the source to it.
	Missing  uint64
	Reseeded bool // this check repaired the region's source
}

// Lost reports an acknowledgement GLOBAL never stored: the region's source
// consumer will not send those events again by itself.
func (s SourceStatus) Lost() bool { return s.Behind() && s.AckFloor > s.Stored }

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
		h, err := g.scan(ctx, gst, r)
		if err != nil {
			return append(out, st), err
		}
		if h != nil {
			st.Missing = h.from
			g.logger().Warn("chain-wide view has a hole; rewinding the source", "region", r,
				"missing_from", h.from, "next_held", h.next, "global_seq", h.gseq)
			if err := g.rewindSource(ctx, r, h.gseq); err != nil {
				return append(out, st), err
			}
			g.forget(r)
			g.mu.Lock()
			g.reseeds++
			g.holes++
			g.mu.Unlock()
			st.Reseeded = true
			out = append(out, st)
			continue
		}
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
		ci, err := g.consumerInfo(ctx, r)
		if err != nil {
			g.logger().Debug("source consumer not readable for the source check", "region", r, "err", err)
		} else {
			st.AckFloor = ci.AckFloor.Stream
		}
		// Two checks in a row: a flow-control acknowledgement can run a
		// moment ahead of the store it follows.
		lost := g.markLost(r, st.Lost())
		stalled := g.Reseed > 0 && st.StalledFor >= g.Reseed
		if lost || stalled {
			g.logger().Warn("re-seeding a chain-wide source", "region", r, "stored_seq", st.Stored,
				"region_seq", st.RegionSeq, "ack_floor", st.AckFloor, "lost_ack", lost, "stalled_for", st.StalledFor)
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

// markLost records whether this check saw a lost acknowledgement, and says
// whether the previous check (at the same stored sequence) saw one too.
func (g *SourceWatch) markLost(region string, lost bool) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.state[region]
	if s == nil {
		return false
	}
	was := s.lost
	s.lost = lost
	return was && lost
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
	return g.getRegionMsg(ctx, region, map[string]any{"last_by_subj": events.Orders.Wildcard()})
}

// getRegionMsg sends a message-get request to the region's ORDERS and
// returns the sequence of the message found; 0 when there is none.
func (g *SourceWatch) getRegionMsg(ctx context.Context, region string, req map[string]any) (uint64, error) {
	body, _ := json.Marshal(req)
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	msg, err := g.JS.Conn().RequestWithContext(rctx, APIPrefix(region)+".STREAM.MSG.GET."+events.Orders.Stream, body)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("region %s: order event: %w", region, err)
	}
	if resp.Error != nil {
		if resp.Error.ErrCode == 10037 { // no message found
			return 0, nil
		}
		return 0, fmt.Errorf("region %s: order event: %s (%d)", region, resp.Error.Description, resp.Error.ErrCode)
	}
	if resp.Message == nil {
		return 0, fmt.Errorf("region %s: order event: empty answer", region)
	}
	return resp.Message.Seq, nil
}

// reseedPause bounds how long a re-seed keeps the region's source consumer
// paused: if the watch dies mid-way, the consumer resumes by itself.
const reseedPause = time.Minute

// ReseedSource repairs the region's source into ORDERS_GLOBAL, losing
// nothing and storing nothing twice:
//
//  1. pause the region's source consumer, and wait until it is paused;
//  2. remove the source from ORDERS_GLOBAL (nothing more is stored from it);
//  3. read the last region sequence GLOBAL stored, and reset the consumer
//     to the next one (its ack floor is then what GLOBAL really holds);
//  4. add the source back: nats-server resets the consumer to that ack
//     floor and subscribes, and since the consumer is paused, the answer
//     it reads back cannot count messages pushed before it subscribed;
//  5. once the source is set up, resume the consumer.
//
// A reset earlier than needed is harmless (the source skips what it has
// already stored); a reset later would skip events, which step 3 rules out
// by reading what is stored after the source is gone.
func (g *SourceWatch) ReseedSource(ctx context.Context, region string) error {
	return g.rewindSource(ctx, region, 0)
}

// rewindSource is ReseedSource that first deletes, when from is not 0,
// the region's messages in GLOBAL from GLOBAL sequence from on: the
// source then stores them again, in the region's order, with the events
// a hole before them lacked. The global dashboard keeps each order's last
// status, so applying an order's events again, in order, converges.
func (g *SourceWatch) rewindSource(ctx context.Context, region string, from uint64) error {
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

	// 1. Pause, and see it applied (the pause goes through the meta group).
	if err := g.pauseSource(ctx, region, time.Now().Add(reseedPause)); err != nil {
		return err
	}
	defer func() {
		// Resume whatever happened; the pause expires by itself otherwise.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := g.pauseSource(rctx, region, time.Time{}); err != nil {
			g.logger().Warn("could not resume a chain-wide source consumer; it resumes when its pause ends", "region", region, "err", err)
		}
	}()
	if err := g.waitConsumer(ctx, region, "paused", func(ci *jetstream.ConsumerInfo) bool { return ci.Paused }); err != nil {
		return err
	}

	// 2. Remove the source.
	if _, err := g.JS.UpdateStream(ctx, without); err != nil {
		return fmt.Errorf("%s without the source of %s: %w", GlobalOrdersStream, region, err)
	}
	restored := false
	addBack := func() error {
		// The source must come back: retry for as long as ctx allows.
		for wait := 200 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			_, err := g.JS.UpdateStream(ctx, cfg)
			if err == nil {
				restored = true
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
	defer func() {
		if !restored {
			_ = addBack()
		}
	}()

	// 3. What GLOBAL holds, read once nothing more arrives (and, for a
	// hole, once what follows it is gone); the consumer starts again right
	// after it. nats-server can still store a message it had queued for the
	// removed source (its queue is shared by the stream's sources), so
	// wait until GLOBAL's last event of the region stays put.
	if err := quiet(ctx, st, region); err != nil {
		return err
	}
	if from > 0 {
		n, err := deleteFrom(ctx, st, region, from)
		if err != nil {
			return err
		}
		g.logger().Info("deleted the chain-wide view's messages after a hole", "region", region, "from_global_seq", from, "deleted", n)
		g.mu.Lock()
		if sc := g.scans[region]; sc != nil && sc.gseq >= from {
			delete(g.scans, region) // scanned again from the start
		}
		g.mu.Unlock()
	}
	stored, err := storedFrom(ctx, st, region)
	if err != nil {
		return err
	}
	if err := g.resetSource(ctx, region, stored+1); err != nil {
		return err
	}

	// 4. Add the source back, and 5. wait until nats-server has set it up
	// (until then its source info reports no activity) before resuming.
	if err := addBack(); err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := st.Info(ctx)
		if err == nil {
			for _, src := range info.Sources {
				if src.External != nil && src.External.APIPrefix == APIPrefix(region) && src.Active >= 0 {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			g.logger().Warn("a re-seeded chain-wide source is not set up yet; resuming its consumer anyway", "region", region)
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// apiError is the error of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

// request sends a JetStream API request to the region's source consumer
// through GLOBAL's import ("<prefix>.CONSUMER.<op>.ORDERS.<consumer>").
func (g *SourceWatch) request(ctx context.Context, region, op string, body any, into any) error {
	var data []byte
	if body != nil {
		var err error
		if data, err = json.Marshal(body); err != nil {
			return err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	subject := fmt.Sprintf("%s.CONSUMER.%s.%s.%s", APIPrefix(region), op, events.Orders.Stream, SourceConsumer(region))
	msg, err := g.JS.Conn().RequestWithContext(rctx, subject, data)
	if err != nil {
		return fmt.Errorf("region %s: %s: %w", region, subject, err)
	}
	var resp struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("region %s: %s: %w", region, subject, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("region %s: %s: %s (%d)", region, subject, resp.Error.Description, resp.Error.ErrCode)
	}
	if into != nil {
		return json.Unmarshal(msg.Data, into)
	}
	return nil
}

// consumerInfo reads the region's source consumer.
func (g *SourceWatch) consumerInfo(ctx context.Context, region string) (*jetstream.ConsumerInfo, error) {
	var ci jetstream.ConsumerInfo
	if err := g.request(ctx, region, "INFO", nil, &ci); err != nil {
		return nil, err
	}
	return &ci, nil
}

// pauseSource pauses the region's source consumer until the given time;
// the zero time resumes it.
func (g *SourceWatch) pauseSource(ctx context.Context, region string, until time.Time) error {
	var body any = struct{}{}
	if !until.IsZero() {
		body = map[string]time.Time{"pause_until": until.UTC()}
	}
	return g.request(ctx, region, "PAUSE", body, nil)
}

// resetSource moves the region's source consumer to start at seq (its ack
// floor becomes seq-1).
func (g *SourceWatch) resetSource(ctx context.Context, region string, seq uint64) error {
	return g.request(ctx, region, "RESET", map[string]uint64{"seq": seq}, nil)
}

// waitConsumer polls the region's source consumer until ok holds.
func (g *SourceWatch) waitConsumer(ctx context.Context, region, what string, ok func(*jetstream.ConsumerInfo) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ci, err := g.consumerInfo(ctx, region)
		if err == nil && ok(ci) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("region %s: source consumer not %s after 30s (last error: %v)", region, what, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// hole is a gap in a region's part of GLOBAL that the region can fill.
type hole struct {
	from uint64 // the first region sequence missing (the region holds it)
	next uint64 // the region sequence GLOBAL holds after the gap
	gseq uint64 // GLOBAL's sequence of that message
}

// scan reads the region's messages GLOBAL stored since the last scan
// (headers only) and checks that their source sequences follow each
// other. A gap is a hole when the region still holds an event inside it
// (its domain streams keep every event, but a test or an operator may
// have deleted some: a gap of deleted events is not a hole). It returns
// the first hole, or nil.
func (g *SourceWatch) scan(ctx context.Context, gst jetstream.Stream, region string) (*hole, error) {
	g.mu.Lock()
	if g.scans == nil {
		g.scans = map[string]*scanState{}
	}
	sc := g.scans[region]
	if sc == nil {
		sc = &scanState{}
		g.scans[region] = sc
	}
	cur := *sc
	g.mu.Unlock()

	last, err := gst.GetLastMsgForSubject(ctx, region+"."+events.Orders.Wildcard())
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: last message of %s: %w", GlobalOrdersStream, region, err)
	}
	if last.Sequence <= cur.gseq {
		return nil, nil
	}
	cons, err := gst.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{region + ".>"},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       cur.gseq + 1,
		HeadersOnly:       true,
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: scan of %s: %w", GlobalOrdersStream, region, err)
	}
	save := func() {
		g.mu.Lock()
		if s := g.scans[region]; s == sc {
			*s = cur
		}
		g.mu.Unlock()
	}
	defer save()
	for cur.gseq < last.Sequence {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("%s: scan of %s: %w", GlobalOrdersStream, region, err)
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return nil, err
			}
			src, err := SourcedSequence(msg.Headers())
			if err != nil {
				return nil, fmt.Errorf("%s seq %d: %w", GlobalOrdersStream, md.Sequence.Stream, err)
			}
			switch {
			case src <= cur.sourced:
				g.logger().Warn("chain-wide view holds a region's event twice or out of order", "region", region,
					"region_seq", src, "after", cur.sourced, "global_seq", md.Sequence.Stream)
				cur.gseq = md.Sequence.Stream
				continue
			case src > cur.sourced+1:
				held, err := g.regionNext(ctx, region, cur.sourced+1)
				if err != nil {
					return nil, err
				}
				if held < src {
					return &hole{from: held, next: src, gseq: md.Sequence.Stream}, nil
				}
			}
			cur.gseq, cur.sourced = md.Sequence.Stream, src
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("%s: scan of %s: %w", GlobalOrdersStream, region, err)
		}
		if n == 0 {
			break // nothing more now; the next check goes on
		}
	}
	return nil, nil
}

// deleteFrom deletes the region's messages of GLOBAL from sequence from on,
// and says how many.
func deleteFrom(ctx context.Context, gst jetstream.Stream, region string, from uint64) (int, error) {
	info, err := gst.Info(ctx)
	if err != nil {
		return 0, err
	}
	end := info.State.LastSeq
	if end < from {
		return 0, nil
	}
	cons, err := gst.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{region + ".>"},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		HeadersOnly:       true,
		InactiveThreshold: 5 * time.Second,
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return deleted, err
		}
		n := 0
		for msg := range batch.Messages() {
			n++
			md, err := msg.Metadata()
			if err != nil {
				return deleted, err
			}
			if md.Sequence.Stream > end {
				return deleted, nil
			}
			if err := gst.DeleteMsg(ctx, md.Sequence.Stream); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
				return deleted, fmt.Errorf("%s: delete %d: %w", GlobalOrdersStream, md.Sequence.Stream, err)
			}
			deleted++
			if md.NumPending == 0 {
				return deleted, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return deleted, err
		}
		if n == 0 {
			return deleted, nil
		}
	}
}

// regionNext asks the region for the sequence of its first order event at
// or after seq (through GLOBAL's import of its message-get API).
func (g *SourceWatch) regionNext(ctx context.Context, region string, seq uint64) (uint64, error) {
	got, err := g.getRegionMsg(ctx, region, map[string]any{"seq": seq, "next_by_subj": events.Orders.Wildcard()})
	if err != nil {
		return 0, err
	}
	if got == 0 {
		return math.MaxUint64, nil // nothing at or after seq
	}
	return got, nil
}

// quiet waits until GLOBAL's last event of the region has not changed for
// three reads 200 ms apart (at most 10 s).
func quiet(ctx context.Context, gst jetstream.Stream, region string) error {
	last, err := storedFrom(ctx, gst, region)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Second)
	for same := 0; same < 3 && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		now, err := storedFrom(ctx, gst, region)
		if err != nil {
			return err
		}
		if now == last {
			same++
		} else {
			last, same = now, 0
		}
	}
	return nil
}

package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"
)

// Partitioned consumption (docs/scaling.md, ADR 0015).
//
// A partitioned consumer splits one logical durable consumer into P
// partition consumers over the same stream and filter. Every instance of
// the service (a member) runs one PartitionedConsumer; the members share a
// KV bucket in which each one keeps a heartbeat key and a lease per
// partition it owns. A partition is assigned to one live member by
// rendezvous hashing with bounded load, and its owner:
//
//   - takes the lease with a create-if-absent (CAS) write and renews it with
//     update-on-revision writes before the bucket's TTL removes it;
//   - unpins the partition consumer's priority group (pinned_client policy:
//     the server delivers a partition's messages to one puller only) and
//     resets it to its ack floor, so whatever the previous owner left
//     unacknowledged is delivered again, in stream order, to the new owner;
//   - reads the partition consumer sequentially: a message whose key (by
//     default the aggregate id, the subject after its first token) hashes to
//     another partition is acknowledged without being handled; a message of
//     its own partition is handled, retried in place, and acknowledged
//     before the next one is looked at. The consumers use AckAll, so one
//     acknowledgement covers the skipped messages before it.
//
// Every key is thus handled by one member at a time and in stream order.

// PartitionGroup is the priority group of every partition consumer.
const PartitionGroup = "owner"

// DefaultPartitions is the partition count when PartitionSpec.Partitions is 0.
const DefaultPartitions = 8

// PartitionKey returns the partition key of a message from its subject and
// headers (not from its decoded payload: every partition consumer sees
// every message, and decoding all of them in every partition would
// multiply the decoding work by the partition count).
type PartitionKey func(subject string, hdr nats.Header) string

// AggregateKey is the default PartitionKey: the subject without its first
// token, which is the aggregate id for the domain subjects
// (orders.<orderId> → <orderId>).
func AggregateKey(subject string, _ nats.Header) string {
	if _, rest, ok := strings.Cut(subject, "."); ok {
		return rest
	}
	return subject
}

// PartitionOf maps a key to a partition in [0, partitions) with 32-bit
// FNV-1a. The mapping is part of the contract between the members: all of
// them must run the same function and partition count.
func PartitionOf(key string, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key))
	return int(h.Sum32() % uint32(partitions))
}

// PartitionDurable is the durable name of partition p of n of a base
// durable, e.g. inventory-orders-p3of8. The partition count is part of the
// name, so a group re-partitioned to another count starts new consumers
// instead of mixing two mappings on one.
func PartitionDurable(durable string, p, n int) string {
	return fmt.Sprintf("%s-p%dof%d", durable, p, n)
}

// PartitionBucket is the KV bucket holding the members and leases of the
// partitioned consumer durable on stream.
func PartitionBucket(stream, durable string) string {
	return "partitions_" + stream + "_" + durable
}

// PartitionSpec configures a partitioned consumer. The embedded
// ConsumerSpec keeps its meaning: Durable is the base name (dead letters
// keep its subject), MaxDeliver bounds the attempts at a message before it
// is dead-lettered, BackOff spaces them, MaxAckPending bounds the messages
// in flight per partition, AckWait is the server's redelivery timer.
type PartitionSpec struct {
	ConsumerSpec
	// Partitions is the number of partitions. Default 8. Every member of a
	// group must use the same count.
	Partitions int
	// Key returns a message's partition key. Default AggregateKey.
	Key PartitionKey
	// LeaseTTL is how long a partition lease and a member heartbeat live
	// without renewal: the time after which a crashed member's partitions
	// move. Leases are renewed every LeaseTTL/4. Default 10s, minimum 1s.
	LeaseTTL time.Duration
	// Replicas of the lease bucket (the stream replicas in production).
	// Default 1.
	Replicas int
}

func (s PartitionSpec) withDefaults() PartitionSpec {
	if s.MaxDeliver <= 0 {
		s.MaxDeliver = 5
	}
	if s.BackOff == nil {
		s.BackOff = []time.Duration{200 * time.Millisecond, time.Second, 5 * time.Second, 15 * time.Second}
	}
	if s.MaxAckPending <= 0 {
		s.MaxAckPending = 256
	}
	if s.AckWait <= 0 {
		s.AckWait = 30 * time.Second
	}
	if s.Partitions <= 0 {
		s.Partitions = DefaultPartitions
	}
	if s.Key == nil {
		s.Key = AggregateKey
	}
	if s.LeaseTTL <= 0 {
		s.LeaseTTL = 10 * time.Second
	}
	s.LeaseTTL = max(s.LeaseTTL, time.Second)
	if s.Replicas < 1 {
		s.Replicas = 1
	}
	return s
}

// retryDelay is the pause before attempt+1 of a message: BackOff[attempt-1],
// the last delay repeating.
func (s PartitionSpec) retryDelay(attempt uint64) time.Duration {
	if len(s.BackOff) == 0 {
		return time.Second
	}
	return s.BackOff[min(int(max(attempt, 1))-1, len(s.BackOff)-1)]
}

// PartitionOptions wires a partitioned consumer into its service.
type PartitionOptions struct {
	ConsumerOptions
	// Member identifies this instance among the members of the group (pod
	// name, host name). It must be unique among live members; characters
	// not allowed in a KV key are replaced. Default: a random id.
	Member string
	// OnOwnership is called (from the coordinating goroutine) with the
	// sorted partitions this member owns whenever that set changes.
	// Optional.
	OnOwnership func(owned []int)
}

// memberInfo is the value of a member's heartbeat key.
type memberInfo struct {
	Partitions int       `json:"partitions"`
	Since      time.Time `json:"since"`
}

// PartitionedConsumer is a running member of a partitioned consumer group.
type PartitionedConsumer struct {
	spec   PartitionSpec
	js     jetstream.JetStream
	reg    *events.Registry
	h      Handler
	opts   PartitionOptions
	log    *slog.Logger
	member string
	kv     jetstream.KeyValue
	stream jetstream.Stream
	names  []string // partition durables
	hello  []byte   // heartbeat value

	cancel   context.CancelFunc
	done     chan struct{}
	trigger  chan struct{}
	released chan int

	// Owned only by the coordinating goroutine.
	leases  map[int]*lease
	members []string
	owned   []int

	mu       sync.Mutex
	snapshot []int // owned partitions, for Owned

	handled atomic.Uint64
}

// lease is a partition this member holds in the KV bucket.
type lease struct {
	p         int
	rev       uint64
	releasing bool
	t         *term
	retryAt   time.Time // earliest restart of a failed term
}

// term is one owner's run over a partition: from takeover (unpin, reset)
// to the end of its lease or a graceful release.
type term struct {
	p        int
	durable  string
	leaseCtx context.Context // handlers run under it: ends when the lease may be lost
	abort    context.CancelCauseFunc
	stopCtx  context.Context // ends the reading loop after the message in hand
	stop     context.CancelFunc
	done     chan struct{}

	mu       sync.Mutex
	deadline time.Time
	watchdog *time.Timer
}

var errLeaseLost = errors.New("partition lease lost")

// ConsumePartitioned joins the group of partitioned consumers of spec as
// the member opts.Member, creates the partition consumers and the lease
// bucket when missing, and starts taking its share of the partitions. Stop
// it with Stop (graceful: the partitions are released after their message
// in hand). Handlers must be idempotent, as with Consume: a partition that
// changes owner is resumed from its ack floor.
func ConsumePartitioned(ctx context.Context, js jetstream.JetStream, reg *events.Registry, spec PartitionSpec, h Handler, opts PartitionOptions) (*PartitionedConsumer, error) {
	spec = spec.withDefaults()
	if spec.Stream == "" || spec.Durable == "" {
		return nil, errors.New("consume partitioned: stream and durable name are required")
	}
	member := sanitizeMember(opts.Member)
	if member == "" {
		member = nuid.Next()
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	c := &PartitionedConsumer{
		spec: spec, js: js, reg: reg, h: h, opts: opts, member: member,
		log:      log.With("stream", spec.Stream, "consumer", spec.Durable, "member", member),
		done:     make(chan struct{}),
		trigger:  make(chan struct{}, 1),
		released: make(chan int, spec.Partitions),
		leases:   map[int]*lease{},
	}
	var err error
	c.stream, err = js.Stream(ctx, spec.Stream)
	if err != nil {
		return nil, fmt.Errorf("consume partitioned %s/%s: %w", spec.Stream, spec.Durable, err)
	}
	c.kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      PartitionBucket(spec.Stream, spec.Durable),
		Description: fmt.Sprintf("members and partition leases of %s on %s", spec.Durable, spec.Stream),
		History:     1,
		TTL:         spec.LeaseTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    spec.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("consume partitioned %s/%s: lease bucket: %w", spec.Stream, spec.Durable, err)
	}
	if err := c.checkPeers(ctx); err != nil {
		return nil, err
	}
	for p := range spec.Partitions {
		name := PartitionDurable(spec.Durable, p, spec.Partitions)
		if err := c.ensureConsumer(ctx, name); err != nil {
			return nil, fmt.Errorf("consume partitioned %s/%s: %w", spec.Stream, name, err)
		}
		c.names = append(c.names, name)
	}
	c.hello, _ = json.Marshal(memberInfo{Partitions: spec.Partitions, Since: time.Now().UTC()})
	if _, err := c.kv.Put(ctx, memberKey(member), c.hello); err != nil {
		return nil, fmt.Errorf("consume partitioned %s/%s: join: %w", spec.Stream, spec.Durable, err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	watcher, err := c.kv.WatchAll(runCtx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		cancel()
		_ = c.kv.Delete(context.Background(), memberKey(member))
		return nil, fmt.Errorf("consume partitioned %s/%s: watch: %w", spec.Stream, spec.Durable, err)
	}
	go c.watch(runCtx, watcher)
	go c.coordinate(runCtx)
	c.log.Info("joined partitioned consumer group", "partitions", spec.Partitions, "lease_ttl", spec.LeaseTTL)
	return c, nil
}

// Member returns this member's id in the group.
func (c *PartitionedConsumer) Member() string { return c.member }

// Durable returns the base durable name of the group.
func (c *PartitionedConsumer) Durable() string { return c.spec.Durable }

// Owned returns the partitions whose lease this member holds and whose
// messages it is reading.
func (c *PartitionedConsumer) Owned() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.snapshot)
}

// Handled returns the number of messages this member handled successfully
// (its own partitions' messages, not the skipped ones).
func (c *PartitionedConsumer) Handled() uint64 { return c.handled.Load() }

// Stop leaves the group gracefully: every partition finishes its message
// in hand, acknowledges what it read, and its lease is deleted so that
// another member takes it over at once; then the heartbeat key is deleted.
func (c *PartitionedConsumer) Stop() {
	c.cancel()
	<-c.done
}

func memberKey(m string) string { return "m." + m }
func leaseKey(p int) string     { return "p." + strconv.Itoa(p) }

// sanitizeMember keeps the characters a KV key token allows.
func sanitizeMember(m string) string {
	var b strings.Builder
	for _, r := range m {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '=':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// checkPeers refuses to join a group whose live members use another
// partition count: two mappings over one stream would hand one key to two
// members.
func (c *PartitionedConsumer) checkPeers(ctx context.Context) error {
	members, err := c.liveMembers(ctx)
	if err != nil {
		return fmt.Errorf("consume partitioned %s/%s: members: %w", c.spec.Stream, c.spec.Durable, err)
	}
	for _, m := range members {
		e, err := c.kv.Get(ctx, memberKey(m))
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			continue
		}
		if err != nil {
			return fmt.Errorf("consume partitioned %s/%s: member %s: %w", c.spec.Stream, c.spec.Durable, m, err)
		}
		var info memberInfo
		if json.Unmarshal(e.Value(), &info) == nil && info.Partitions != c.spec.Partitions {
			return fmt.Errorf("consume partitioned %s/%s: live member %s uses %d partitions, this one %d: stop every member before changing the partition count",
				c.spec.Stream, c.spec.Durable, m, info.Partitions, c.spec.Partitions)
		}
	}
	return nil
}

// ensureConsumer creates a partition consumer when it does not exist. A
// new partition consumer of a group whose base durable exists (the service
// ran unpartitioned before) starts after the base durable's ack floor
// instead of replaying the whole stream.
func (c *PartitionedConsumer) ensureConsumer(ctx context.Context, name string) error {
	cfg := jetstream.ConsumerConfig{
		Durable:        name,
		Description:    fmt.Sprintf("partition of %s (owner in KV %s)", c.spec.Durable, PartitionBucket(c.spec.Stream, c.spec.Durable)),
		FilterSubjects: c.spec.FilterSubjects,
		AckPolicy:      jetstream.AckAllPolicy,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// Attempts are counted by the owner, which retries a message in
		// place; the server only redelivers after a crash or a reset.
		MaxDeliver:     -1,
		AckWait:        c.spec.AckWait,
		MaxAckPending:  c.spec.MaxAckPending,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{PartitionGroup},
		PinnedTTL:      c.spec.LeaseTTL,
	}
	if existing, err := c.js.Consumer(ctx, c.spec.Stream, name); err == nil {
		// Keep where it started (a migrated consumer starts after the
		// base durable's ack floor); update the settings that may change.
		if info := existing.CachedInfo(); info != nil {
			cfg.DeliverPolicy, cfg.OptStartSeq = info.Config.DeliverPolicy, info.Config.OptStartSeq
		}
		_, err = c.js.UpdateConsumer(ctx, c.spec.Stream, cfg)
		return err
	} else if !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return err
	}
	if base, err := c.js.Consumer(ctx, c.spec.Stream, c.spec.Durable); err == nil {
		if info := base.CachedInfo(); info != nil && info.AckFloor.Stream > 0 {
			cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, info.AckFloor.Stream+1
			c.log.Info("partition consumer starts after the unpartitioned durable's ack floor", "partition_consumer", name, "start_seq", cfg.OptStartSeq)
		}
	}
	_, err := c.js.CreateConsumer(ctx, c.spec.Stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerExists) {
		return nil // another member created it meanwhile
	}
	return err
}

// liveMembers lists the members whose heartbeat has not expired.
func (c *PartitionedConsumer) liveMembers(ctx context.Context) ([]string, error) {
	lister, err := c.kv.ListKeysFiltered(ctx, "m.*")
	if err != nil {
		return nil, err
	}
	var out []string
	for k := range lister.Keys() {
		out = append(out, strings.TrimPrefix(k, "m."))
	}
	slices.Sort(out)
	return out, nil
}

// watch triggers a round when the group changes in a way that calls for
// action before the next tick: a member joins, a member leaves or a lease
// is released. Renewals (puts on known keys) are ignored, or every renewal
// would trigger the renewals of every member.
func (c *PartitionedConsumer) watch(ctx context.Context, w jetstream.KeyWatcher) {
	defer func() { _ = w.Stop() }()
	known := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				continue
			}
			key := e.Key()
			switch {
			case e.Operation() != jetstream.KeyValuePut:
				delete(known, key)
				c.poke()
			case strings.HasPrefix(key, "m.") && !known[key]:
				known[key] = true
				c.poke()
			}
		}
	}
}

func (c *PartitionedConsumer) poke() {
	select {
	case c.trigger <- struct{}{}:
	default:
	}
}

// coordinate runs the rounds of this member until Stop.
func (c *PartitionedConsumer) coordinate(ctx context.Context) {
	defer close(c.done)
	tick := c.spec.LeaseTTL / 4
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			c.shutdown()
			return
		case p := <-c.released:
			c.finishRelease(p)
			continue
		case <-c.trigger:
		case <-timer.C:
		}
		c.round(ctx)
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(tick)
	}
}

// round renews this member's heartbeat and leases, then moves towards the
// assignment computed from the live members.
func (c *PartitionedConsumer) round(ctx context.Context) {
	if c.js.Conn().IsClosed() {
		return // the process is shutting down; the leases expire
	}
	rctx, cancel := context.WithTimeout(ctx, c.spec.LeaseTTL/2)
	defer cancel()
	if _, err := c.kv.Put(rctx, memberKey(c.member), c.hello); err != nil && ctx.Err() == nil {
		c.log.Warn("heartbeat failed", "err", err)
	}
	c.renew(rctx)
	members, err := c.liveMembers(rctx)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("listing the group's members failed; keeping the current partitions", "err", err)
		}
		c.publishOwned()
		return
	}
	if !slices.Contains(members, c.member) {
		members = append(members, c.member)
		slices.Sort(members)
	}
	if !slices.Equal(members, c.members) {
		c.log.Info("group membership", "members", members)
		c.members = members
	}
	owners := AssignPartitions(members, c.spec.Partitions)
	for p, owner := range owners {
		l, held := c.leases[p]
		switch {
		case held && owner != c.member && !l.releasing:
			c.release(l)
		case held && owner == c.member && !l.releasing && l.t.ended() && time.Now().After(l.retryAt):
			// The term ended without a release (connection loss, consumer
			// error): start a new one, from the ack floor.
			c.startTerm(l, l.t.deadlineAt())
		case !held && owner == c.member:
			c.acquire(rctx, p)
		}
	}
	c.publishOwned()
}

// renew extends every held lease. A lease whose revision moved on (it
// expired and was taken) is lost: its term is aborted at once.
func (c *PartitionedConsumer) renew(ctx context.Context) {
	for p, l := range c.leases {
		sent := time.Now()
		rev, err := c.kv.Update(ctx, leaseKey(p), []byte(c.member), l.rev)
		switch {
		case err == nil:
			l.rev = rev
			l.t.extend(c.leaseDeadline(sent))
		case isRevisionConflict(err):
			c.log.Warn("partition lease lost", "partition", p)
			l.t.abort(errLeaseLost)
			l.t.stop()
			delete(c.leases, p)
		default:
			// Unknown outcome: the term's watchdog ends it if no renewal
			// succeeds before the lease may have expired.
			if ctx.Err() == nil {
				c.log.Warn("partition lease renewal failed", "partition", p, "err", err)
			}
			if l.t.expired() && l.t.ended() {
				delete(c.leases, p)
			}
		}
	}
}

// leaseDeadline is when this member must consider a lease written at sent
// lost: the server expires it LeaseTTL after receiving the write, which is
// after sent; the margin covers clock-rate differences and timer lag.
func (c *PartitionedConsumer) leaseDeadline(sent time.Time) time.Time {
	margin := max(c.spec.LeaseTTL/10, 100*time.Millisecond)
	return sent.Add(c.spec.LeaseTTL - margin)
}

// acquire takes a free partition's lease and starts reading it.
func (c *PartitionedConsumer) acquire(ctx context.Context, p int) {
	sent := time.Now()
	rev, err := c.kv.Create(ctx, leaseKey(p), []byte(c.member))
	if errors.Is(err, jetstream.ErrKeyExists) {
		// Held by its previous owner until released or expired — or by
		// this member, if an earlier create's reply was lost: then adopt
		// it by renewing.
		e, gerr := c.kv.Get(ctx, leaseKey(p))
		if gerr != nil || string(e.Value()) != c.member {
			return
		}
		sent = time.Now()
		rev, err = c.kv.Update(ctx, leaseKey(p), []byte(c.member), e.Revision())
	}
	if err != nil {
		if ctx.Err() == nil && !isRevisionConflict(err) {
			c.log.Warn("taking a partition lease failed", "partition", p, "err", err)
		}
		return
	}
	l := &lease{p: p, rev: rev}
	c.leases[p] = l
	c.startTerm(l, c.leaseDeadline(sent))
	c.log.Info("partition taken", "partition", p)
}

// startTerm starts reading a held partition under a lease valid until
// deadline.
func (c *PartitionedConsumer) startTerm(l *lease, deadline time.Time) {
	t := &term{p: l.p, durable: c.names[l.p], done: make(chan struct{}), deadline: deadline}
	t.leaseCtx, t.abort = context.WithCancelCause(context.Background())
	t.stopCtx, t.stop = context.WithCancel(t.leaseCtx)
	t.armLocked()
	l.t = t
	l.retryAt = time.Now().Add(c.spec.LeaseTTL / 4)
	go c.read(t)
}

// release ends a partition's term gracefully, then deletes its lease
// (finishRelease), so that its new owner can take it at once.
func (c *PartitionedConsumer) release(l *lease) {
	l.releasing = true
	c.log.Info("releasing partition", "partition", l.p)
	t := l.t
	t.stop()
	go func() {
		<-t.done
		c.released <- l.p
	}()
}

func (c *PartitionedConsumer) finishRelease(p int) {
	l, ok := c.leases[p]
	if !ok {
		return
	}
	delete(c.leases, p)
	l.t.abort(errLeaseLost)
	ctx, cancel := context.WithTimeout(context.Background(), c.spec.LeaseTTL/2)
	defer cancel()
	if err := c.kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(l.rev)); err != nil && !isRevisionConflict(err) {
		c.log.Warn("releasing a partition lease failed; it expires instead", "partition", p, "err", err)
	} else {
		c.log.Info("partition released", "partition", p)
	}
	c.publishOwned()
	c.poke()
}

// shutdown releases every partition after its message in hand and leaves
// the group.
func (c *PartitionedConsumer) shutdown() {
	for _, l := range c.leases {
		l.t.stop()
	}
	for p, l := range c.leases {
		<-l.t.done
		l.t.abort(errLeaseLost)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := c.kv.Delete(ctx, leaseKey(p), jetstream.LastRevision(l.rev)); err != nil && !isRevisionConflict(err) {
			c.log.Debug("partition lease not deleted; it expires instead", "partition", p, "err", err)
		}
		cancel()
		delete(c.leases, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.kv.Delete(ctx, memberKey(c.member)); err != nil {
		c.log.Debug("heartbeat key not deleted; it expires instead", "err", err)
	}
	c.publishOwned()
	c.log.Info("left partitioned consumer group")
}

func (c *PartitionedConsumer) publishOwned() {
	var owned []int
	for p, l := range c.leases {
		if !l.releasing {
			owned = append(owned, p)
		}
	}
	slices.Sort(owned)
	if slices.Equal(owned, c.owned) && c.owned != nil {
		return
	}
	c.owned = owned
	if c.owned == nil {
		c.owned = []int{}
	}
	c.mu.Lock()
	c.snapshot = slices.Clone(owned)
	c.mu.Unlock()
	if c.opts.OnOwnership != nil {
		c.opts.OnOwnership(slices.Clone(owned))
	}
}

func isRevisionConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// --- a term: reading one partition ---

func (t *term) extend(deadline time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if deadline.After(t.deadline) {
		t.deadline = deadline
	}
	t.armLocked()
}

func (t *term) armLocked() {
	d := time.Until(t.deadline)
	if t.watchdog == nil {
		t.watchdog = time.AfterFunc(d, t.checkDeadline)
		return
	}
	t.watchdog.Reset(d)
}

// checkDeadline aborts the term when its lease may have expired: handlers
// see their context end, and nothing more is read or acknowledged.
func (t *term) checkDeadline() {
	t.mu.Lock()
	left := time.Until(t.deadline)
	if left > 0 {
		t.watchdog.Reset(left)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.abort(errLeaseLost)
}

func (t *term) deadlineAt() time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deadline
}

func (t *term) expired() bool { return !time.Now().Before(t.deadlineAt()) }

func (t *term) ended() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// read takes over a partition and handles its messages until the term
// ends.
func (c *PartitionedConsumer) read(t *term) {
	defer close(t.done)
	defer func() {
		t.mu.Lock()
		if t.watchdog != nil {
			t.watchdog.Stop()
		}
		t.mu.Unlock()
	}()
	log := c.log.With("partition", t.p)
	ctx := t.stopCtx
	// A previous owner may still be pinned (it crashed, or released the
	// lease a moment ago): unpin it, then restart delivery at the ack floor
	// so that what it left unacknowledged comes again, in order.
	if err := c.stream.UnpinConsumer(ctx, t.durable, PartitionGroup); err != nil && ctx.Err() == nil {
		log.Warn("unpinning the partition consumer failed", "err", err)
		return
	}
	reset, err := c.js.ResetConsumer(ctx, c.spec.Stream, t.durable)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("resetting the partition consumer to its ack floor failed", "err", err)
		}
		return
	}
	cons, err := c.js.Consumer(ctx, c.spec.Stream, t.durable)
	if err != nil {
		if ctx.Err() == nil {
			log.Warn("partition consumer lookup failed", "err", err)
		}
		return
	}
	expiry := max(c.spec.LeaseTTL/3, time.Second)
	it, err := cons.Messages(jetstream.PullPriorityGroup(PartitionGroup),
		jetstream.PullMaxMessages(min(c.spec.MaxAckPending, 256)), jetstream.PullExpiry(expiry))
	if err != nil {
		log.Warn("reading the partition consumer failed", "err", err)
		return
	}
	defer it.Stop()
	log.Debug("reading partition", "from_seq", reset.ResetSeq)

	r := partitionReader{c: c, t: t, log: log, last: reset.ResetSeq - 1, ackEvery: max(c.spec.MaxAckPending/2, 1)}
	defer r.flush(true)
	for ctx.Err() == nil {
		var m jetstream.Msg
		if r.pending != nil {
			m, err = it.Next(jetstream.NextMaxWait(50 * time.Millisecond))
			if errors.Is(err, nats.ErrTimeout) {
				r.flush(false)
				continue
			}
		} else {
			m, err = it.Next(jetstream.NextContext(ctx))
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("partition read ended", "err", err)
			}
			return
		}
		if !r.take(m) {
			return
		}
	}
}

// partitionReader is the state of one term's sequential read.
type partitionReader struct {
	c        *PartitionedConsumer
	t        *term
	log      *slog.Logger
	last     uint64        // stream sequence of the last message dealt with
	pending  jetstream.Msg // latest skipped message not yet acknowledged
	pendSeq  uint64        // its consumer sequence
	skipped  int
	ackEvery int
}

// take deals with one delivered message; false ends the term.
func (r *partitionReader) take(m jetstream.Msg) bool {
	md, err := m.Metadata()
	if err != nil {
		r.log.Error("message without metadata", "err", err)
		_ = m.Term()
		return true
	}
	if md.Sequence.Stream <= r.last {
		// A redelivery (ack wait passed while the message waited in line)
		// of something this term already dealt with.
		r.skip(m, md)
		return true
	}
	if PartitionOf(r.c.spec.Key(m.Subject(), m.Headers()), r.c.spec.Partitions) != r.t.p {
		r.last = md.Sequence.Stream
		r.skip(m, md)
		return true
	}
	if r.t.leaseCtx.Err() != nil || r.c.js.Conn().IsClosed() {
		// The lease may be gone, or the acknowledgement could not be sent:
		// leave the message to the partition's next term.
		return false
	}
	if !r.handle(m, md) {
		return false
	}
	r.last = md.Sequence.Stream
	r.pending, r.pendSeq, r.skipped = nil, 0, 0
	return true
}

func (r *partitionReader) skip(m jetstream.Msg, md *jetstream.MsgMetadata) {
	if md.Sequence.Consumer >= r.pendSeq {
		r.pending, r.pendSeq = m, md.Sequence.Consumer
	}
	r.skipped++
	if r.skipped >= r.ackEvery {
		r.flush(false)
	}
}

// flush acknowledges the skipped messages read since the last
// acknowledgement (AckAll: the latest one covers them all). At the end of
// a term it waits for the server's confirmation, so that the next owner
// does not read them again.
func (r *partitionReader) flush(final bool) {
	if r.pending == nil || r.t.leaseCtx.Err() != nil {
		return
	}
	if final {
		ctx, cancel := context.WithTimeout(r.t.leaseCtx, 2*time.Second)
		_ = r.pending.DoubleAck(ctx)
		cancel()
	} else {
		_ = r.pending.Ack()
	}
	r.pending, r.pendSeq, r.skipped = nil, 0, 0
}

// handle handles one message of the partition, retrying in place: the
// messages behind it wait, so a key's events stay in order even when one
// of them fails. After MaxDeliver attempts the message is dead-lettered.
// It returns false when the term ends before the message is settled (the
// next owner takes it from the ack floor).
func (r *partitionReader) handle(m jetstream.Msg, md *jetstream.MsgMetadata) bool {
	c, spec := r.c, r.c.spec
	attempt := max(md.NumDelivered, 1)
	for {
		err := c.handleOnce(r.t.leaseCtx, m, md)
		if err == nil {
			if r.t.leaseCtx.Err() != nil {
				// Handled, but the lease may be gone: the next owner
				// handles the message again (handlers are idempotent).
				return false
			}
			c.handled.Add(1)
			if aerr := m.Ack(); aerr != nil {
				r.log.Warn("ack failed; the message will be handled again", "seq", md.Sequence.Stream, "err", aerr)
			}
			return true
		}
		if r.t.leaseCtx.Err() != nil || c.js.Conn().IsClosed() {
			return false
		}
		if attempt >= uint64(spec.MaxDeliver) {
			dl := DeadLetter{Stream: md.Stream, Consumer: spec.Durable, Subject: m.Subject(), Seq: md.Sequence.Stream, Deliveries: attempt, Error: err.Error()}
			if perr := r.park(dl, m); perr != nil {
				r.log.Error("dead-letter publish failed; retrying", "seq", dl.Seq, "err", perr)
				if !r.wait(m, spec.retryDelay(attempt)) {
					return false
				}
				continue
			}
			if aerr := m.Ack(); aerr != nil {
				r.log.Warn("ack of a dead-lettered message failed", "seq", md.Sequence.Stream, "err", aerr)
			}
			return true
		}
		delay := spec.retryDelay(attempt)
		r.log.Warn("handler failed; will retry", "seq", md.Sequence.Stream, "subject", m.Subject(), "attempt", attempt, "retry_in", delay, "err", err)
		if !r.wait(m, delay) {
			return false
		}
		attempt++
	}
}

// wait sleeps before a retry, telling the server the message is still in
// progress so that its ack wait does not run out. False: the term ended.
func (r *partitionReader) wait(m jetstream.Msg, d time.Duration) bool {
	step := max(r.c.spec.AckWait/2, time.Millisecond)
	for d > 0 {
		_ = m.InProgress()
		s := min(d, step)
		timer := time.NewTimer(s)
		select {
		case <-r.t.stopCtx.Done():
			timer.Stop()
			return false
		case <-timer.C:
		}
		d -= s
	}
	return r.t.stopCtx.Err() == nil
}

func (r *partitionReader) park(dl DeadLetter, m jetstream.Msg) error {
	ctx, cancel := context.WithTimeout(r.t.leaseCtx, 10*time.Second)
	defer cancel()
	stored, err := Park(ctx, r.c.js, dl, m.Headers(), m.Data())
	if err != nil {
		return err
	}
	if stored {
		r.log.Error("ALERT: message dead-lettered", "alert", "dead_letter", "subject", dl.Subject, "seq", dl.Seq, "deliveries", dl.Deliveries, "err", dl.Error)
		if r.c.opts.OnDeadLetter != nil {
			r.c.opts.OnDeadLetter(dl)
		}
	}
	return nil
}

// handleOnce decodes a message and runs the handler once, in the trace of
// the append that stored the event, turning a panic into an error.
func (c *PartitionedConsumer) handleOnce(ctx context.Context, m jetstream.Msg, md *jetstream.MsgMetadata) (err error) {
	rec, err := DecodeMessage(c.reg, m.Subject(), m.Headers(), m.Data(), md.Stream, md.Sequence.Stream, md.Timestamp)
	if err != nil {
		return err
	}
	sctx, span := tracing.Start(tracing.FromTraceParent(ctx, rec.Envelope.TraceParent), "consume "+c.spec.Durable, trace.SpanKindConsumer,
		"stream", md.Stream, "event", rec.Envelope.Type, "aggregate", rec.Envelope.AggregateID)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panic: %v", p)
		}
		if err != nil {
			span.RecordError(err)
		}
		span.End()
	}()
	return c.h(sctx, rec)
}

// --- assignment ---

// AssignPartitions returns the owner of each of n partitions among members:
// rendezvous (highest random weight) hashing with bounded load. Each
// partition, in order, goes to the member ranking highest for it among
// those with room left, so that every member ends with floor(n/m) or
// floor(n/m)+1 partitions. Every member computes the same
// answer from the same member set; a member joining or leaving moves few
// partitions besides its own share.
func AssignPartitions(members []string, n int) []string {
	owners := make([]string, n)
	if len(members) == 0 {
		return owners
	}
	ms := slices.Clone(members)
	slices.Sort(ms)
	ms = slices.Compact(ms)
	// Loads end at floor(n/m) or one more, exactly n%m members taking one
	// more.
	base, extra := n/len(ms), n%len(ms)
	load := make(map[string]int, len(ms))
	ranked := make([]string, len(ms))
	for p := range n {
		copy(ranked, ms)
		slices.SortStableFunc(ranked, func(a, b string) int {
			wa, wb := rendezvousWeight(a, p), rendezvousWeight(b, p)
			switch {
			case wa > wb:
				return -1
			case wa < wb:
				return 1
			}
			return strings.Compare(a, b)
		})
		for _, m := range ranked {
			if load[m] < base || (load[m] == base && extra > 0) {
				if load[m] == base {
					extra--
				}
				owners[p] = m
				load[m]++
				break
			}
		}
	}
	return owners
}

func rendezvousWeight(member string, p int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(member))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(strconv.Itoa(p)))
	// FNV's high bits mix poorly for short inputs; finish with a 64-bit mixer.
	x := h.Sum64()
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb3fe1a85ec53
	x ^= x >> 33
	return x
}

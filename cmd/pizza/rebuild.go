package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/awesome-pizza/pizza/pkg/catalog"
	"github.com/awesome-pizza/pizza/pkg/events"
	"github.com/awesome-pizza/pizza/pkg/eventstore"
	"github.com/awesome-pizza/pizza/pkg/projection"
	"github.com/awesome-pizza/pizza/pkg/service"
	"github.com/awesome-pizza/pizza/services/drivers"
	"github.com/awesome-pizza/pizza/services/inventory"
	"github.com/awesome-pizza/pizza/services/kitchen"
	"github.com/awesome-pizza/pizza/services/orders"
	"github.com/nats-io/nats.go/jetstream"
)

// rebuildable lists every read model `pizza rebuild` can rebuild.
func rebuildable(keyspace string, cat *catalog.Catalog) []projection.Projector {
	var ps []projection.Projector
	ps = append(ps, orders.Projectors(keyspace)...)
	ps = append(ps, inventory.Projectors()...)
	ps = append(ps, kitchen.Projectors(cat)...)
	ps = append(ps, drivers.Projectors()...)
	return ps
}

// runRebuild rebuilds read models from sequence 1 into a fresh keyspace,
// next to the live ones (the platform keeps serving), then switches each
// over in one atomic step.
func runRebuild(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var natsURL, redisURL, keyspace, only, catalogPath string
	fs := flag.NewFlagSet("pizza rebuild", flag.ContinueOnError)
	fs.SetOutput(stderr)
	service.StringFlag(fs, &natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server of the platform", "NATS_URL")
	service.StringFlag(fs, &redisURL, "redis-url", "redis://127.0.0.1:6379/0", "Redis of the platform's read models", "REDIS_URL")
	service.StringFlag(fs, &keyspace, "keyspace", "pizza:", "keyspace of the live read models")
	service.StringFlag(fs, &catalogPath, "catalog", "", "catalogue file the platform runs with; empty: the built-in seed")
	fs.StringVar(&only, "projection", "", "rebuild only this read model (default: all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cat, err := catalog.Load(catalogPath)
	if err != nil {
		return err
	}
	log := service.NewLogger(stderr, "text", "warn")
	nc, err := service.ConnectNATS(natsURL, "pizza-rebuild", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	rdb, err := service.ConnectRedis(ctx, redisURL, log)
	if err != nil {
		return err
	}
	defer rdb.Close()

	scratch := fmt.Sprintf("%srebuild-%d:", keyspace, time.Now().UnixNano())
	var names []string
	var todo []projection.Projector
	for _, p := range rebuildable(scratch, cat) {
		names = append(names, p.Name())
		if only == "" || p.Name() == only {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		sort.Strings(names)
		return fmt.Errorf("--projection %q: no such read model (choose from %s)", only, strings.Join(names, ", "))
	}
	reg := events.NewRegistry()
	tty := isTerminal(stderr)
	for _, p := range todo {
		start := time.Now()
		target, err := eventstore.LastSeq(ctx, js, p.Stream())
		if err != nil {
			return err
		}
		rt := projection.New(js, rdb, reg, p, projection.Options{Keyspace: scratch, Logger: log, BatchSize: 512})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = rt.Run(rctx) }()
		err = progress(ctx, stderr, tty, p.Name(), rt, target, start)
		cancel()
		<-done
		if err != nil {
			_ = projection.DeleteModel(context.Background(), rdb, scratch, p.Name())
			return err
		}
		moved, err := projection.SwitchModel(ctx, rdb, p.Name(), keyspace, scratch)
		if err != nil {
			return err
		}
		elapsed := time.Since(start)
		fmt.Fprintf(stdout, "rebuilt %s: %d events in %s (%.0f events/s), %d keys switched in\n",
			p.Name(), rt.Checkpoint(), elapsed.Round(time.Millisecond), float64(rt.Checkpoint())/max(elapsed.Seconds(), 1e-9), moved)
	}
	return nil
}

// progress waits until the rebuilt model caught up with the stream as it
// was at the start, showing events/s and the time left.
func progress(ctx context.Context, w io.Writer, tty bool, name string, rt *projection.Runtime, target uint64, start time.Time) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastLine := time.Time{}
	for {
		cp := rt.Checkpoint()
		done := rt.CaughtUp() && cp >= target || target == 0 && rt.CaughtUp()
		elapsed := time.Since(start).Seconds()
		rate := float64(cp) / max(elapsed, 1e-9)
		left := "?"
		if rate > 0 && target > cp {
			left = (time.Duration(float64(target-cp)/rate) * time.Second).Round(time.Second).String()
		}
		line := fmt.Sprintf("%-18s %s %d/%d events  %.0f events/s  ETA %s", name, bar(cp, target, 30), cp, target, rate, left)
		switch {
		case tty:
			fmt.Fprint(w, "\r"+line)
			if done {
				fmt.Fprintln(w)
			}
		case done || time.Since(lastLine) > 5*time.Second:
			fmt.Fprintln(w, line)
			lastLine = time.Now()
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("rebuild interrupted; the live read model is untouched")
		case <-tick.C:
		}
	}
}

func bar(n, total uint64, width int) string {
	if total == 0 {
		return "[" + strings.Repeat("=", width) + "]"
	}
	filled := int(float64(width) * float64(min(n, total)) / float64(total))
	return "[" + strings.Repeat("=", filled) + strings.Repeat(" ", width-filled) + "]"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Command pizza is the one CLI of the Awesome Pizza platform.
//
//	pizza dev      run the whole platform in one process (embedded NATS, every service, the gateway)
//	pizza replay   print the event log as JSON lines (filtered), or --verify its invariants
//	pizza rebuild  rebuild read models from sequence 1 next to the live ones, then switch atomically
//	pizza token    mint a bearer token with the development key
//	pizza sim      simulate customers ordering and drivers delivering
//	pizza bench    benchmark the platform and, in the same run, the raw engines
//
// Run `pizza <command> -h` for a command's flags; every flag can also be
// set through the environment (PIZZA_<FLAG_NAME>).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "pizza:", err)
		os.Exit(1)
	}
}

const usage = `Awesome Pizza platform

Usage:
  pizza dev [flags]       run the whole platform in one process
  pizza replay [flags]    print the event log as JSON lines, or --verify its invariants
  pizza rebuild [flags]   rebuild read models from the log and switch them in atomically
  pizza token [flags]     mint a bearer token (--role R --subject S [--restaurant R])
  pizza sim [flags]       simulate customers and drivers against a running platform
  pizza bench [flags]     measure the platform against the raw engines underneath

Run 'pizza <command> -h' for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], stdout, stderr)
	case "replay":
		return runReplay(ctx, args[1:], stdout, stderr)
	case "rebuild":
		return runRebuild(ctx, args[1:], stdout, stderr)
	case "token":
		return runToken(ctx, args[1:], stdout, stderr)
	case "sim":
		return runSim(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

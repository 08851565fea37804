// Command presencehub is the presence hub: `presencehub serve` runs it,
// `presencehub token` mints a token to try it with, and `presencehub
// disk-check` measures whether a disk flushes fast enough for it.
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

const usage = `presencehub: real-time presence and conversation ownership for helpdesks

Usage:
  presencehub serve [flags]   run the hub (see "presencehub serve -h")
  presencehub token [flags]   mint a signed token (see "presencehub token -h")
  presencehub disk-check [flags]
                              time the disk's flushes, as every durable commit
                              waits for one (see "presencehub disk-check -h")
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "presencehub:", err)
		}
		os.Exit(2)
	}
}

// run dispatches a subcommand. It returns when the subcommand is done or, for
// serve, when ctx is cancelled and the hub has shut down.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return flag.ErrHelp
	}
	switch args[0] {
	case "serve":
		cfg, err := parseServe(args[1:], os.LookupEnv, stderr)
		if err != nil {
			return err
		}
		return serve(ctx, cfg, stdout, stderr)
	case "token":
		return token(args[1:], os.LookupEnv, stdout, stderr)
	case "disk-check":
		return diskCheck(ctx, args[1:], os.LookupEnv, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

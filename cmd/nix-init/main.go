// Command nix-init is the init process of a Thermos sandbox: it makes sure
// the closures of the sandbox's processes are in the node's Nix store,
// fetching what is missing, and roots them in the sandbox (.gc/NAME) for as
// long as the sandbox lives. It is also the tool for debugging a sandbox by
// hand (nix-init status).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

// Exit codes, documented in --help and the README.
const (
	exitOK        = 0 // every root realised and rooted
	exitPermanent = 1 // a failure that retrying cannot heal
	exitUsage     = 2 // the command line is wrong
	exitGaveUp    = 3 // transient failures outlasted --timeout
	// A run stopped by SIGTERM or SIGINT exits 128+N (143, 130), as a
	// shell reports a process the signal killed.
	exitSignalBase = 128
)

const exitCodesHelp = `Exit codes:
  0  every closure is in the store and rooted
  1  permanent failure (no cache has a path, bad signature, bad argument...)
  2  usage error
  3  gave up: transient failures (daemon or cache unreachable, HTTP 5xx)
     lasted longer than --timeout
  143, 130  stopped by SIGTERM, SIGINT: within a second, children ended and
     temporary files removed; a second signal exits at once
`

// env is the outside world a command sees; tests replace it.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// memoryLimit is the Go heap's soft limit: nix-init streams every NAR, so
// what it holds at once is a few buffers per download; the limit makes the
// collector return garbage before the heap doubles, which keeps a node's
// many concurrent inits small. GOMEMLIMIT overrides it.
const memoryLimit = 24 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(memoryLimit)
	}
	ctx, stopped := handleSignals(os.Stderr)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	if sig := stopped(); sig != 0 {
		code = exitSignalBase + int(sig)
	}
	os.Exit(code)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) > 0 {
		switch args[0] {
		case "status":
			return runStatus(ctx, e, args[1:])
		case "version":
			return runVersion(e, args[1:])
		case "render":
			return runRender(os.Stdin, e, args[1:])
		}
	}
	return runRealise(ctx, e, args)
}

// exitCode maps an error to the documented exit codes.
func exitCode(err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case isGaveUp(err):
		return exitGaveUp
	default:
		return exitPermanent
	}
}

func fail(e *env, err error) int {
	fmt.Fprintf(e.stderr, "%s nix-init: error: %v\n", timestamp(), err)
	return exitCode(err)
}

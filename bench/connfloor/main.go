// Command connfloor is the warm start's floor in daemon mode: the least a
// daemon client that is a static Go program pays, with nothing of
// nix-init's own. It starts, connects to the daemon at
// NIX_DAEMON_SOCKET_PATH, runs the handshake and SetOptions (the daemon
// forks a worker that opens the store), and exits. BenchmarkWarmStart runs
// it beside nix-store and nix-init.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nix-aurora/nix-aurora/store"
)

func main() {
	ctx := context.Background()
	c, err := store.Dial(ctx, os.Getenv("NIX_DAEMON_SOCKET_PATH"))
	if err == nil {
		err = c.SetOptions(ctx, store.DefaultOptions())
		c.Close()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "connfloor:", err)
		os.Exit(1)
	}
}

package main

import (
	"fmt"
	"runtime"

	"github.com/nix-aurora/nix-aurora/binarycache"
	"github.com/nix-aurora/nix-aurora/internal/buildinfo"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

// protocol is the worker protocol nix-init speaks with every daemon (see
// package store's handshake).
const protocol = "1.35"

// runVersion prints one line: the program, its version, the Go that built
// it, the daemon protocol and the xz decoder, which decides how fast xz
// caches are (BENCHMARKS.md).
func runVersion(e *env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(e.stderr, "nix-init version: takes no arguments\n")
		return exitUsage
	}
	fmt.Fprintln(e.stdout, versionLine())
	return exitOK
}

func versionLine() string {
	return fmt.Sprintf("nix-init %s (%s, protocol %s, xz: %s)", buildinfo.Version(version), runtime.Version(), protocol, binarycache.XZDecoder)
}

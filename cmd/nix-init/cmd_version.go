package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/nix-aurora/nix-aurora/binarycache"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func runVersion(e *env, args []string) int {
	if len(args) > 0 {
		fmt.Fprintf(e.stderr, "nix-init version: takes no arguments\n")
		return exitUsage
	}
	fmt.Fprintf(e.stdout, "nix-init %s (%s, protocol 1.35, xz: %s)\n", buildVersion(), runtime.Version(), binarycache.XZDecoder)
	return exitOK
}

func buildVersion() string {
	if version != "" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return info.Main.Version
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

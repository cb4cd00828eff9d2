package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/nix-aurora/nix-aurora/internal/buildinfo"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func init() {
	register(&command{
		name:    "version",
		summary: "Print nixaurora's version and the Go it was built with (also: nixaurora --version).",
		run: func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				return usagef("version takes no arguments")
			}
			fmt.Fprintln(e.stdout, versionLine())
			return nil
		},
	})
}

func versionLine() string {
	return fmt.Sprintf("nixaurora %s (%s, %s/%s)", buildinfo.Version(version), runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

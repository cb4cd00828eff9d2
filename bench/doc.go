// Package bench holds nix-aurora's benchmarks. Each compares nix-init with
// what Nix itself does in the same run, on hermetic nodes (chroot stores,
// daemons on temporary sockets, caches on 127.0.0.1), and reports medians
// and peak memory as custom metrics. They are benchmarks, not tests: run
// them with `go test ./bench -run '^$' -bench NAME -benchtime Nx` as root,
// and record the results in BENCHMARKS.md with the command.
package bench

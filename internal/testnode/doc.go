// Package testnode builds hermetic Nix "nodes" for integration tests: real
// store paths, real binary caches made by Nix and served over loopback HTTP
// with fault injection, real chroot stores with their own nix-daemon, and
// unprivileged sandboxes. Nothing is mocked.
//
// A typical test:
//
//	fx := testnode.Chain(t, "app", 3, 2, 4096)   // a closure of 7 paths in the host store
//	cache := testnode.NewCache(t, testnode.CacheOptions{}, fx.Root)
//	node := testnode.NewNode(t, testnode.NodeOptions{
//		Substituters:      []string{cache.URL},
//		TrustedPublicKeys: []string{cache.PublicKey},
//	})
//	node.StartDaemon(t)
//	sb := testnode.NewSandbox(t, node)
//	cmd := sb.Command("nix-store", "-r", fx.Root) // as nobody, through the node's daemon
//	...
//	if !node.Valid(t, fx.Root) { ... }
//	node.Verify(t)
//
// # Isolation
//
// Every constructor takes the test and registers its own cleanup. All files
// live in fresh, short directories under os.TempDir() (not t.TempDir(),
// whose names can make unix socket paths too long and file:// URLs
// ambiguous); every server listens on 127.0.0.1:0; every fixture path carries
// a random nonce, so tests may call t.Parallel() and may run repeatedly
// without seeing each other's store paths, caches, narinfo caches or
// sockets. Every wait is bounded.
//
// Fixtures are built in the host store (/nix/store): `nix-build --store DIR`
// forces a sandbox without /bin/sh, so we build on the host and copy. They
// are rooted by links in a temporary directory for the test's lifetime;
// nothing here ever runs the garbage collector on the host store.
//
// The *exec.Cmd values returned by the Command methods are plain; bound
// them yourself (a context, or a timer that kills the process) when a hang
// is possible. Everything the harness runs itself has a timeout.
//
// # Privileges
//
// The package is meant to run as root (CI runs as root): NewSandbox runs
// programs as the user nobody, and BindStore bind-mounts a node's store on
// /nix in a private mount namespace. Those helpers call
// testnix.RequireRoot; the others call testnix.Require, which fails in CI
// and skips elsewhere when Nix is missing.
package testnode

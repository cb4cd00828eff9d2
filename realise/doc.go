// Package realise is nix-init's engine: given the roots of a sandbox's
// processes, it makes their closures valid in the node's store and roots
// them in the sandbox.
//
// The flow of one run: connect to the store, hold a temp root on every root
// path (so a GC running meanwhile cannot take what we are about to root),
// ask which roots are valid (one round trip when all are), substitute the
// missing ones through a Substituter, check they are valid now, create and
// register the indirect roots, wait until no garbage collection that may
// have missed them is running (Nix's GC reads the registered roots before
// the temp roots), and only then let the temp roots go by closing the
// connection. Transient failures (connection lost, daemon
// restarting, cache 5xx or unreachable) retry the whole attempt on a fresh
// connection with exponential backoff within a total budget; permanent ones
// (no cache has the path, bad signature, bad argument) fail at once.
//
// Two Substituters: Daemon lets the store substitute; Direct fetches NARs
// from the caches itself, verified, and imports them through the daemon
// (AddToStoreNar) or, in single-user mode, unpacks them into the store and
// registers them in a few transactions (package localstore). Direct also
// shares work between the runs of a node (claim.go): a root is realised
// by one run while the others wait, and each planned path is fetched by
// one run.
//
// It must never root a path it has not seen valid, and never import
// anything itself without verification: importing is the Substituter's job,
// and the daemon-side one leaves all checks to the daemon.
package realise

// Package store is a client of the Nix daemon worker protocol: the protocol
// nix-store and nix speak to nix-daemon. It reaches a store in one of two ways
// and then speaks the same protocol over either:
//
//   - multi-user Nix: the daemon's unix socket (Dial);
//   - single-user Nix: a child `nix-daemon --stdio` serving the user's own
//     store over its stdin and stdout (Spawn), which trusts its peer.
//
// Open picks one the way Nix's --store and NIX_REMOTE do (ParseURI, Resolve).
//
// A Conn carries one request at a time; calls are serialised, honour their
// context (cancelling closes the connection, the only way to abort a request
// in this protocol), and fail with errors naming the store, the operation and
// the path. Errors reported by the daemon are *DaemonError; a connection the
// daemon has hung up on fails fast with ErrBroken.
//
// What this package must never do:
//   - send a store path it has not validated (ValidatePath): Nix 2.8 drops the
//     connection when it cannot parse an argument;
//   - decide on its own to skip signature checks: AddToStoreNar sends
//     dontCheckSigs only as the caller chose it;
//   - shell out to nix-store or nix: the only program it starts is
//     nix-daemon --stdio, and only through Spawn.
package store

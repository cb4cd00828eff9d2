// Package localstore writes into a Nix store that this process owns
// (single-user Nix) the way Nix's own LocalStore does, so that a cold
// closure costs one pass over its bytes and one database transaction
// instead of a daemon import (re-hash, unpack, transaction) per path:
//
//   - Lock takes a path's lock, `<real path>.lock`, with Nix's protocol
//     (flock, and a lock file that became stale is opened again), so that
//     Nix and other nix-init runs never unpack the same path at once;
//   - Unpack restores a NAR at a path's real location in canonical form
//     (files 0444 or 0555 whatever the umask, directories 0555, every
//     mtime 1), removing what it wrote on error (the caller removes what
//     an interrupted import left there first);
//   - a Registrar makes unpacked paths valid a batch per transaction, through
//     `nix-store --load-db` (the store's SQLite database is Nix's to write),
//     which holds the batch's locks and dies with this process, so that no
//     registration commits after another process took the paths over.
//
// It trusts its callers for the content: a path may be registered only
// after its NAR hash was checked (the binarycache stream does this) and
// while the caller holds a temp root and the path's lock.
package localstore

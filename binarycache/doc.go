// Package binarycache is the client of Nix binary caches (substituters)
// for nix-init, and the uploader behind `nixaurora push`.
//
// Reading:
//   - Open / OpenAll open caches at http://, https:// and file:// URLs and
//     read their nix-cache-info (StoreDir must be /nix/store; Priority and
//     WantMassQuery, overridable with ?priority=N and ?want-mass-query=).
//     Caches sort by priority, lower first, stably, as in Nix (default 0).
//   - Cache.NarInfo fetches a narinfo, parses it as tolerantly as Nix
//     (ParseNarInfo), checks it is for the path asked, and verifies its
//     signatures (Verify). Caches.Lookup asks the caches in order and takes
//     the first verified answer, skipping unsigned ones with a note.
//   - Cache.OpenNar streams a NAR, decompressing by the narinfo's
//     Compression (none, xz, bzip2, zstd, gzip, br), and checks NarSize and
//     NarHash (and the NAR's strict format) while streaming.
//   - Caches.Plan finds what is missing for some roots: one request per
//     root when the cache has a closure index (see ClosureIndexSuffix and
//     CLOSURE-INDEX.md), else breadth first, each level in parallel.
//
// HTTP: one shared client with connection reuse, netrc credentials, https
// servers checked against ssl-cert-file's CA bundle when one is named (CA,
// LoadCA; else the system's roots), a
// connect timeout, a stall timeout (no byte for a while aborts the read),
// a bound on concurrent requests per cache, and retries with exponential
// back-off and jitter for transient failures only (IsTransient): 5xx
// except 501/505/511, 408, 429, refused or reset connections, timeouts,
// truncated bodies. A NAR download cut mid-way resumes with a Range
// request. A narinfo answered with 404, 410, 401, 403 or 407 is "not in
// this cache" (ErrNotFound), not an error. Every error is an *Error naming
// the operation, the path or file, and the cache.
//
// Writing: an Uploader writes NARs (zstd by default), signed narinfos,
// nix-cache-info and closure indexes to file:// directories or, by HTTP
// PUT, to http(s) caches, reading NARs from the store (Source, which
// *store.Conn satisfies).
//
// What this package must never do:
//   - hand out a narinfo whose signature it has not verified against the
//     trusted keys, or that is not for the path asked for: NarInfo,
//     Lookup, ClosureIndex and Plan only return verified narinfos (there is
//     no switch to skip the check; content-addressed paths need a
//     signature too);
//   - end a NAR stream with io.EOF unless exactly NarSize bytes with hash
//     NarHash arrived and they form one canonical NAR; a consumer must not
//     act on the bytes before that EOF;
//   - buffer a whole NAR in memory (narinfos and closure indexes, bounded
//     in size, are read whole);
//   - retry what cannot heal (signatures, hashes, 4xx), or retry without
//     bound;
//   - read or write outside a cache: file names from narinfos must be
//     clean relative paths.
package binarycache

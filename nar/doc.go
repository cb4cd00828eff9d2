// Package nar reads and writes Nix ARchives (NAR), the serialisation Nix
// hashes, signs and ships for every store path.
//
// A NAR is a sequence of length-prefixed strings, each padded with zero
// bytes to a multiple of eight:
//
//	nar  := "nix-archive-1" node
//	node := "(" "type" ( "regular" [ "executable" "" ] "contents" <bytes>
//	                   | "symlink" "target" <target>
//	                   | "directory" { "entry" "(" "name" <name> "node" node ")" } ) ")"
//
// The Reader is strict: it accepts exactly the canonical form that
// `nix-store --dump` writes and nothing else, so that a NAR it accepts has
// one meaning, whatever importer later unpacks it. It rejects a wrong magic
// or token, non-zero padding, entry names that are empty, "." or "..", or
// that contain "/" or NUL, names that are not in strictly increasing byte
// order within their directory (which also rules out duplicates; Nix 2.8
// itself does not check this), unknown fields, oversized names, targets,
// strings and nesting, truncation, and any byte after the root node. Its
// errors name the entry and the byte offset. The Writer produces the same
// canonical form, and DumpPath serialises a file tree byte for byte like
// `nix-store --dump`.
//
// What this package must never do:
//   - report success (io.EOF from Next, a nil error from Validate or Copy)
//     for input that is not one complete, canonical NAR with nothing after it;
//   - follow a symlink, or interpret a name or target as a path on this
//     machine: it only parses and serialises;
//   - buffer a file's contents: Reader.Read streams them from the input.
package nar

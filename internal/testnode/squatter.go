package testnode

import (
	_ "embed"
	"os/exec"
	"testing"
)

// squatterScript is testdata/squatter.py, embedded so that tests of any
// package run it without a path relative to their own directory.
//
//go:embed testdata/squatter.py
var squatterScript string

// SquatModes are the ways the squatter can hold a name (see
// testdata/squatter.py): accept-close, never-accept, wrong-data and
// bind-only.
var SquatModes = []string{"accept-close", "never-accept", "wrong-data", "bind-only"}

// SquatterCommand runs testdata/squatter.py as the hostile neighbour: it
// binds each of names (abstract unix socket addresses, "@" for the
// leading NUL) and serves them in mode (one of SquatModes), prints "ready"
// once they are all bound and, on SIGTERM, the number of connections it
// accepted. It is for the tests of claims (realise's, and nix-init's that
// share work through them) under a neighbour who got to the names first.
// Like NeighbourCommand it needs root; start, read and end it yourself.
func SquatterCommand(t testing.TB, mode string, names ...string) *exec.Cmd {
	t.Helper()
	return NeighbourCommand(t, "/usr/bin/python3", append([]string{"-c", squatterScript, mode}, names...)...)
}

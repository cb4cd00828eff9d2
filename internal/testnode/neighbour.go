package testnode

import (
	"os/exec"
	"syscall"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// NeighbourUID and NeighbourGID are the hostile neighbour's: another
// unprivileged user of the node, neither the sandboxes' user (nobody) nor
// the store's owner. It needs no passwd entry: the kernel only needs the
// numbers.
const (
	NeighbourUID = 65533
	NeighbourGID = 65533
)

// NeighbourCommand runs a program as the hostile neighbour (no
// supplementary groups, PATH=/usr/bin:/bin, HOME=/nonexistent), for tests
// that check what another local user can do to a run: squat its claims,
// plant files, hold its locks. Like every Command here, bound it yourself.
// It needs root.
func NeighbourCommand(t testing.TB, name string, args ...string) *exec.Cmd {
	t.Helper()
	testnix.RequireRoot(t)
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: NeighbourUID, Gid: NeighbourGID, Groups: []uint32{}},
	}
	return cmd
}

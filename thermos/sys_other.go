//go:build !linux

package thermos

import (
	"os"

	"golang.org/x/sys/unix"
)

// selfExe is what the runner executes as a coordinator.
var selfExe, _ = os.Executable()

// closeOnExecFrom marks the descriptors from fd up close-on-exec, as far
// as the soft limit on open files.
func closeOnExecFrom(fd int) error {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	for n := fd; uint64(n) < lim.Cur && n < 1<<16; n++ {
		unix.FcntlInt(uintptr(n), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	return nil
}

// tree is not known here: a process's tree is killed through its group
// only.
func tree(pid, parent int) []int { return nil }

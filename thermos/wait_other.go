//go:build !linux

package thermos

// waitExited cannot wait without reaping here: the runner then kills what
// is left in a process's group only after reaping it, which leaves a small
// window in which the group's id could be reused.
func waitExited(pid int) bool { return false }

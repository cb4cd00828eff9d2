package thermos

import (
	"syscall"
	"unsafe"
)

// waitExited blocks until the child pid has exited, without reaping it: the
// pid (and so its process group) cannot be reused until Wait, so the runner
// can still kill what the process left behind in its group. It reports
// whether it could wait (os/wait_waitid.go in Go's own source does the same).
func waitExited(pid int) bool {
	const (
		pPID    = 1         // P_PID
		wExited = 0x4       // WEXITED
		wNoWait = 0x1000000 // WNOWAIT
	)
	var siginfo [16]uint64 // room for a siginfo_t (128 bytes)
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&siginfo)), wExited|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			return errno == 0
		}
	}
}

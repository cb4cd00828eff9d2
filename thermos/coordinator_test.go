package thermos

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
)

func TestCoordinatorWithoutRunner(t *testing.T) {
	t.Parallel()
	// The runner is gone (its end of the control pipe closed): the
	// coordinator kills the whole run, so nothing outlives nixaurora.
	dir := t.TempDir()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer statusR.Close()
	controlR, controlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := &exec.Cmd{Path: selfExe, Args: []string{coordinatorArg0, "sleep 30 & echo $! > child.pid; wait"}, Dir: dir,
		ExtraFiles: []*os.File{statusW, controlR}, SysProcAttr: &syscall.SysProcAttr{Setsid: true}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	statusW.Close()
	controlR.Close()
	waitFor(t, dir, "child.pid")
	controlW.Close()
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Errorf("the coordinator ended with %v, want SIGKILL from itself", err)
	}
	pid, _ := strconv.Atoi(read(t, dir, "child.pid"))
	if !dies(pid) {
		t.Errorf("bash's child (pid %d) outlived its coordinator", pid)
	}
}

package thermos

import (
	"fmt"
	"time"
)

// TaskState is the state of the task, as Thermos' TaskState.
type TaskState int

const (
	// TaskActive: the regular processes run.
	TaskActive TaskState = iota
	// TaskCleaning: the regular plan ended (or the task is killed); what
	// still runs got SIGTERM.
	TaskCleaning
	// TaskFinalizing: the final processes run.
	TaskFinalizing
	// TaskSuccess: the regular processes completed within the task's
	// failure limit.
	TaskSuccess
	// TaskFailed: the task reached its failure limit, or a process that
	// failed for good kept its successors from ever running.
	TaskFailed
	// TaskKilled: the context was cancelled before the task ended.
	TaskKilled
)

var taskStateNames = [...]string{"ACTIVE", "CLEANING", "FINALIZING", "SUCCESS", "FAILED", "KILLED"}

func (s TaskState) String() string {
	if s >= 0 && int(s) < len(taskStateNames) {
		return taskStateNames[s]
	}
	return fmt.Sprintf("TaskState(%d)", int(s))
}

// Terminal reports whether s is a final state of the task.
func (s TaskState) Terminal() bool { return s >= TaskSuccess }

// ProcessState is the state of one run of a process, as Thermos'
// ProcessState (FORKED is not told apart from RUNNING here).
type ProcessState int

const (
	// ProcessWaiting: the run is planned but has not started (its
	// predecessors, min_duration or max_concurrency hold it back).
	ProcessWaiting ProcessState = iota
	// ProcessRunning: bash runs the cmdline.
	ProcessRunning
	// ProcessSuccess: the cmdline exited 0.
	ProcessSuccess
	// ProcessFailed: the cmdline exited non-zero, or could not be started.
	ProcessFailed
	// ProcessKilled: bash died of a signal, or the runner killed it. As in
	// Thermos, a run killed while the task is active does not count as a
	// failure: the process is run again.
	ProcessKilled
	// ProcessLost: the runner lost track of the run: its coordinator died
	// before it could tell how bash ended (say, of a `kill 0`), or waiting
	// for it failed. As in Thermos, the process is run again.
	ProcessLost
)

var processStateNames = [...]string{"WAITING", "RUNNING", "SUCCESS", "FAILED", "KILLED", "LOST"}

func (s ProcessState) String() string {
	if s >= 0 && int(s) < len(processStateNames) {
		return processStateNames[s]
	}
	return fmt.Sprintf("ProcessState(%d)", int(s))
}

// Terminal reports whether a run in state s has ended.
func (s ProcessState) Terminal() bool { return s >= ProcessSuccess }

// ProcessStatus is what is known of one run of a process.
type ProcessStatus struct {
	// Process is the process's name; Final tells a final process.
	Process string
	Final   bool
	// Run counts the process's runs from 0; it names the log directory
	// .logs/Process/Run.
	Run   int
	State ProcessState
	// ExitCode is the exit status of a run that ended; -N when bash died
	// of signal N (as Python's returncode, which Thermos records).
	ExitCode int
	// Start is when the run started: zero while WAITING, and for a run
	// that could not start. Duration is how long a run that ended ran.
	Start    time.Time
	Duration time.Duration
	// Message explains a run that could not start or was lost.
	Message string
}

func (s ProcessStatus) String() string {
	out := fmt.Sprintf("%s run %d: %s", s.Process, s.Run, s.State)
	switch s.State {
	case ProcessSuccess, ProcessFailed, ProcessKilled:
		if s.Start.IsZero() {
			break // it never started
		}
		if s.ExitCode < 0 {
			out += fmt.Sprintf(" (signal %d)", -s.ExitCode)
		} else {
			out += fmt.Sprintf(" (exit %d)", s.ExitCode)
		}
		out += " after " + s.Duration.Round(time.Millisecond).String()
	}
	if s.Message != "" {
		out += ": " + s.Message
	}
	return out
}

// TaskStatus is the task as it enters a state.
type TaskStatus struct {
	State   TaskState
	TaskID  string
	Sandbox string
	// Ports are the ports given to {{thermos.ports[NAME]}}, by name.
	Ports map[string]int
}

// Observer receives the task's progress. Calls come from one goroutine,
// one at a time, in the order things happen; they should return quickly,
// since the runner waits for them.
type Observer interface {
	// TaskChanged reports each stage the task enters, the last one terminal.
	TaskChanged(status TaskStatus)
	// ProcessChanged reports a run planned (WAITING: every process at the
	// start, and a process to be run again), started or ended.
	ProcessChanged(status ProcessStatus)
}

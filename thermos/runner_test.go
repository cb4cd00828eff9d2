package thermos

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// count is a cmdline prefix that numbers the runs of a process: $n is 1 on
// the first run, 2 on the second...
const count = `n=$(( $(cat count 2>/dev/null || echo 0) + 1 )); echo $n > count; `

func TestOrdering(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	j := job(t, `{"processes": [
		{"name": "b", "cmdline": "echo $EPOCHREALTIME > b.start"},
		{"name": "a", "cmdline": "sleep 0.3; echo $EPOCHREALTIME > a.end"}],
		"constraints": [{"order": ["a", "b"]}]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{Observer: rec})
	mustSucceed(t, res, err)
	aEnd, bStart := stamps(t, dir, "a.end")[0], stamps(t, dir, "b.start")[0]
	if !bStart.After(aEnd) {
		t.Errorf("b started at %v, before a ended at %v", bStart, aEnd)
	}
	if got := rec.states("b"); !slices.Equal(got, []string{"0 WAITING", "0 RUNNING", "0 SUCCESS"}) {
		t.Errorf("b's updates: %q", got)
	}
	if got := rec.tasks; !slices.Equal(got, []TaskState{TaskActive, TaskCleaning, TaskFinalizing, TaskSuccess}) {
		t.Errorf("task states %v", got)
	}
	// b was reported RUNNING only after a's SUCCESS.
	var order []string
	for _, u := range rec.updates {
		if u.State != ProcessWaiting {
			order = append(order, u.Process+" "+u.State.String())
		}
	}
	if !slices.Equal(order, []string{"a RUNNING", "a SUCCESS", "b RUNNING", "b SUCCESS"}) {
		t.Errorf("updates in order: %q", order)
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	// The process fails on its first two runs and succeeds on the third.
	const failTwice = count + `[ $n -gt 2 ]`
	cases := []struct {
		name        string
		maxFailures int
		want        TaskState
		runs        []ProcessState
	}{
		{"max_failures 3", 3, TaskSuccess, []ProcessState{ProcessFailed, ProcessFailed, ProcessSuccess}},
		{"max_failures 2", 2, TaskFailed, []ProcessState{ProcessFailed, ProcessFailed}},
		{"max_failures 0", 0, TaskSuccess, []ProcessState{ProcessFailed, ProcessFailed, ProcessSuccess}},
		{"max_failures 1", 1, TaskFailed, []ProcessState{ProcessFailed}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			j := job(t, `{"processes": [{"name": "p", "min_duration": 0, "max_failures": `+strconv.Itoa(c.maxFailures)+`,
				"cmdline": "`+failTwice+`"}]}`)
			res, _, err := runTask(t, context.Background(), j, Options{})
			if c.want == TaskSuccess {
				mustSucceed(t, res, err)
			} else {
				te := mustEnd(t, res, err, c.want)
				if !strings.Contains(te.Error(), "process p failed (exit 1)") {
					t.Errorf("error %q does not say which process failed", te)
				}
			}
			if got := runStates(t, res, "p"); !slices.Equal(got, c.runs) {
				t.Errorf("runs %v, want %v", got, c.runs)
			}
		})
	}
}

func TestRetryForever(t *testing.T) {
	t.Parallel()
	j := job(t, `{"processes": [{"name": "p", "min_duration": 0, "max_failures": 0, "cmdline": "`+count+`[ $n -ge 6 ]"}]}`)
	res, _, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	if got := len(runStates(t, res, "p")); got != 6 {
		t.Errorf("%d runs, want 6", got)
	}
}

func TestMinDuration(t *testing.T) {
	t.Parallel()
	j := job(t, `{"processes": [{"name": "p", "min_duration": 1, "max_failures": 3,
		"cmdline": "echo $EPOCHREALTIME >> starts; `+count+`echo $EPOCHREALTIME >> ends; [ $n -gt 2 ]"}]}`)
	start := time.Now()
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	starts, ends := stamps(t, dir, "starts"), stamps(t, dir, "ends")
	if len(starts) != 3 || len(ends) != 3 {
		t.Fatalf("%d starts, %d ends, want 3", len(starts), len(ends))
	}
	if d := starts[0].Sub(start); d > 500*time.Millisecond {
		t.Errorf("the first run started %v after Run: min_duration is no delay before the first run", d)
	}
	for i := 1; i < 3; i++ {
		// Thermos waits min_duration from the end of a run (its last
		// terminal state) to the start of the next.
		if gap := starts[i].Sub(ends[i-1]); gap < time.Second {
			t.Errorf("run %d started %v after run %d ended, want at least 1s", i, gap, i-1)
		}
		if gap := starts[i].Sub(starts[i-1]); gap > 2500*time.Millisecond {
			t.Errorf("run %d started %v after run %d: too late", i, gap, i-1)
		}
	}
}

func TestDaemon(t *testing.T) {
	t.Parallel()
	t.Run("rerun after success", func(t *testing.T) {
		t.Parallel()
		// Succeeds twice, then fails: a daemon's successes are no failures,
		// and it ends only when it fails for good.
		j := job(t, `{"processes": [{"name": "d", "daemon": true, "min_duration": 0, "cmdline": "`+count+`[ $n -lt 3 ]"}]}`)
		res, _, err := runTask(t, context.Background(), j, Options{})
		mustEnd(t, res, err, TaskFailed)
		if got := runStates(t, res, "d"); !slices.Equal(got, []ProcessState{ProcessSuccess, ProcessSuccess, ProcessFailed}) {
			t.Errorf("runs %v", got)
		}
	})
	t.Run("run limit", func(t *testing.T) {
		t.Parallel()
		// The production runner stops a process after 100 runs.
		j := job(t, `{"processes": [{"name": "d", "daemon": true, "min_duration": 0, "cmdline": "true"}]}`)
		res, _, err := runTask(t, context.Background(), j, Options{})
		mustEnd(t, res, err, TaskFailed)
		if got := len(runStates(t, res, "d")); got != runLimit {
			t.Errorf("%d runs, want %d", got, runLimit)
		}
	})
}

func TestEphemeral(t *testing.T) {
	t.Parallel()
	j := job(t, `{"processes": [
		{"name": "main", "cmdline": "sleep 1.5"},
		{"name": "tick", "ephemeral": true, "daemon": true, "min_duration": 1, "cmdline": "echo $EPOCHREALTIME >> ticks"},
		{"name": "sidecar", "ephemeral": true, "cmdline": "echo $$ > sidecar.pid; exec sleep 30"}]}`)
	start := time.Now()
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the task took %v: ephemeral processes held it up", d)
	}
	if ticks := stamps(t, dir, "ticks"); len(ticks) < 2 {
		t.Errorf("the ephemeral daemon ran %d times, want it restarted", len(ticks))
	}
	side, _ := res.Process("sidecar")
	if side.State != ProcessKilled {
		t.Errorf("sidecar ended %s, want KILLED", side.State)
	}
	pid, _ := strconv.Atoi(read(t, dir, "sidecar.pid"))
	if alive(pid) {
		t.Errorf("sidecar (pid %d) still runs", pid)
	}
}

func TestFinalProcesses(t *testing.T) {
	t.Parallel()
	for _, regular := range []string{"true", "false"} {
		t.Run(regular, func(t *testing.T) {
			t.Parallel()
			j := job(t, `{"processes": [
				{"name": "f2", "final": true, "cmdline": "echo $EPOCHREALTIME > f2.start"},
				{"name": "f1", "final": true, "cmdline": "sleep 0.2; echo $EPOCHREALTIME > f1.end"},
				{"name": "main", "cmdline": "sleep 0.2; echo $EPOCHREALTIME > main.end; `+regular+`"}],
				"constraints": [{"order": ["f1", "f2"]}]}`)
			res, dir, err := runTask(t, context.Background(), j, Options{})
			if regular == "true" {
				mustSucceed(t, res, err)
			} else {
				mustEnd(t, res, err, TaskFailed)
			}
			mainEnd, f1End, f2Start := stamps(t, dir, "main.end")[0], stamps(t, dir, "f1.end")[0], stamps(t, dir, "f2.start")[0]
			if !f1End.After(mainEnd) || !f2Start.After(f1End) {
				t.Errorf("main ended %v, f1 ended %v, f2 started %v: want them in that order", mainEnd, f1End, f2Start)
			}
		})
	}
}

func TestKillRunsFinalization(t *testing.T) {
	t.Parallel()
	j := job(t, `{"processes": [
		{"name": "server", "cmdline": "trap 'echo $EPOCHREALTIME > got_term; exit 0' TERM; touch started; sleep 30 & wait"},
		{"name": "later", "cmdline": "touch later_ran"},
		{"name": "cleanup", "final": true, "cmdline": "echo $EPOCHREALTIME > cleanup.start"}],
		"constraints": [{"order": ["server", "later"]}]}`)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		waitFor(t, dir, "started")
		cancel()
	}()
	res, _, err := runTask(t, ctx, j, Options{Sandbox: dir})
	te := mustEnd(t, res, err, TaskKilled)
	if !strings.Contains(te.Error(), "interrupted") {
		t.Errorf("error %q", te)
	}
	if !exists(dir, "got_term") || !exists(dir, "cleanup.start") {
		t.Fatalf("server got SIGTERM: %v, cleanup ran: %v", exists(dir, "got_term"), exists(dir, "cleanup.start"))
	}
	if term, final := stamps(t, dir, "got_term")[0], stamps(t, dir, "cleanup.start")[0]; !final.After(term) {
		t.Errorf("cleanup started %v, before the server's SIGTERM at %v", final, term)
	}
	if exists(dir, "later_ran") {
		t.Errorf("a process ordered after the killed one ran")
	}
	if p, _ := res.Process("later"); p.State != ProcessWaiting || len(p.Runs) != 0 {
		t.Errorf("later: %+v", p)
	}
}

func TestFinalizationWait(t *testing.T) {
	t.Parallel()
	t.Run("hanging final process", func(t *testing.T) {
		t.Parallel()
		j := job(t, `{"finalization_wait": 1, "processes": [
			{"name": "main", "cmdline": "true"},
			{"name": "hang", "final": true, "cmdline": "echo $$ > hang.pid; exec sleep 30"}]}`)
		start := time.Now()
		res, dir, err := runTask(t, context.Background(), j, Options{})
		mustSucceed(t, res, err) // final processes do not decide the task's state
		if d := time.Since(start); d < time.Second || d > 3*time.Second {
			t.Errorf("the task took %v, want finalization_wait (1s)", d)
		}
		if p, _ := res.Process("hang"); p.State != ProcessKilled {
			t.Errorf("hang ended %s, want KILLED", p.State)
		}
		pid, _ := strconv.Atoi(read(t, dir, "hang.pid"))
		if alive(pid) {
			t.Errorf("hang (pid %d) still runs", pid)
		}
	})
	t.Run("ephemeral process ignoring SIGTERM", func(t *testing.T) {
		t.Parallel()
		// The regular processes are done; what still runs gets SIGTERM and
		// finalization_wait to end: it passes while cleaning, so SIGKILL,
		// and no finalization.
		j := job(t, `{"finalization_wait": 1, "processes": [
			{"name": "main", "cmdline": "until [ -e ready ]; do sleep 0.01; done"},
			{"name": "stubborn", "ephemeral": true, "cmdline": "trap '' TERM; touch ready; sleep 30"},
			{"name": "final", "final": true, "cmdline": "touch final_ran"}]}`)
		start := time.Now()
		res, dir, err := runTask(t, context.Background(), j, Options{KillWait: 20 * time.Second})
		mustSucceed(t, res, err)
		if d := time.Since(start); d < time.Second || d > 4*time.Second {
			t.Errorf("the task took %v, want finalization_wait (1s)", d)
		}
		if p, _ := res.Process("stubborn"); p.State != ProcessKilled || p.Runs[0].ExitCode != -9 {
			t.Errorf("stubborn: %+v, want KILLED by signal 9", p)
		}
		if exists(dir, "final_ran") {
			t.Errorf("the final process ran after the finalization deadline")
		}
	})
	t.Run("abort", func(t *testing.T) {
		t.Parallel()
		j := job(t, `{"finalization_wait": 20, "processes": [
			{"name": "main", "cmdline": "true"},
			{"name": "hang", "final": true, "cmdline": "touch started; exec sleep 30"}]}`)
		dir := t.TempDir()
		abort := make(chan struct{})
		go func() {
			waitFor(t, dir, "started")
			close(abort)
		}()
		start := time.Now()
		res, _, err := runTask(t, context.Background(), j, Options{Sandbox: dir, Abort: abort})
		mustEnd(t, res, err, TaskKilled)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the task took %v after an abort", d)
		}
	})
}

func TestKillDeadline(t *testing.T) {
	t.Parallel()
	t.Run("late exit after SIGTERM", func(t *testing.T) {
		t.Parallel()
		// A kill gives the task KillWait, not finalization_wait: the server
		// takes 2s to exit after SIGTERM, and the final process still runs.
		j := job(t, `{"finalization_wait": 1, "processes": [
			{"name": "server", "cmdline": "trap 'sleep 2; echo $EPOCHREALTIME > exited; exit 0' TERM; touch started; sleep 30 & wait"},
			{"name": "cleanup", "final": true, "cmdline": "echo $EPOCHREALTIME > cleanup.start"}]}`)
		dir := t.TempDir()
		ctx := cancelWhen(t, dir, "started")
		start := time.Now()
		res, _, err := runTask(t, ctx, j, Options{Sandbox: dir, KillWait: 10 * time.Second})
		mustEnd(t, res, err, TaskKilled)
		if d := time.Since(start); d > 8*time.Second {
			t.Errorf("the task took %v, want it done once the final process is", d)
		}
		if p, _ := res.Process("server"); p.State != ProcessSuccess {
			t.Errorf("server: %+v, want SUCCESS (its trap exited 0)", p)
		}
		if !exists(dir, "exited") || !exists(dir, "cleanup.start") {
			t.Fatalf("server exited: %v, cleanup ran: %v", exists(dir, "exited"), exists(dir, "cleanup.start"))
		}
		if exited, final := stamps(t, dir, "exited")[0], stamps(t, dir, "cleanup.start")[0]; !final.After(exited) {
			t.Errorf("cleanup started %v, before the server exited at %v", final, exited)
		}
	})
	t.Run("ignoring SIGTERM", func(t *testing.T) {
		t.Parallel()
		// The kill's deadline passes while cleaning: SIGKILL, and no
		// finalization, however long finalization_wait is.
		j := job(t, `{"finalization_wait": 30, "processes": [
			{"name": "stubborn", "cmdline": "trap '' TERM; touch started; sleep 30"},
			{"name": "final", "final": true, "cmdline": "touch final_ran"}]}`)
		dir := t.TempDir()
		ctx := cancelWhen(t, dir, "started")
		start := time.Now()
		res, _, err := runTask(t, ctx, j, Options{Sandbox: dir, KillWait: time.Second})
		mustEnd(t, res, err, TaskKilled)
		if d := time.Since(start); d < time.Second || d > 4*time.Second {
			t.Errorf("the task took %v, want the kill's deadline (1s)", d)
		}
		if p, _ := res.Process("stubborn"); p.State != ProcessKilled || p.Runs[0].ExitCode != -9 {
			t.Errorf("stubborn: %+v, want KILLED by signal 9", p)
		}
		if exists(dir, "final_ran") {
			t.Errorf("the final process ran after the kill's deadline")
		}
	})
	t.Run("while finalizing", func(t *testing.T) {
		t.Parallel()
		// A kill during finalization replaces what is left of
		// finalization_wait (1s) by its own deadline: the final process,
		// which needs 2s, completes.
		j := job(t, `{"finalization_wait": 1, "processes": [
			{"name": "main", "cmdline": "true"},
			{"name": "save", "final": true, "cmdline": "touch started; sleep 2; touch saved"}]}`)
		dir := t.TempDir()
		ctx := cancelWhen(t, dir, "started")
		res, _, err := runTask(t, ctx, j, Options{Sandbox: dir, KillWait: 10 * time.Second})
		mustEnd(t, res, err, TaskKilled)
		if p, _ := res.Process("save"); p.State != ProcessSuccess || !exists(dir, "saved") {
			t.Errorf("save: %+v, want SUCCESS within the kill's deadline", p)
		}
	})
}

func TestTermTopPidOnly(t *testing.T) {
	t.Parallel()
	// SIGTERM goes to the process's top pid only; its child, which would
	// note a SIGTERM, gets none and is SIGKILLed with the rest of the tree.
	j := job(t, `{"processes": [{"name": "server", "cmdline":
		"/bin/bash -c 'trap \"touch child_got_term\" TERM; echo $$ > child.pid; touch started; while :; do sleep 0.05; done' & wait"}]}`)
	dir := t.TempDir()
	ctx := cancelWhen(t, dir, "started")
	res, _, err := runTask(t, ctx, j, Options{Sandbox: dir, KillWait: 10 * time.Second})
	mustEnd(t, res, err, TaskKilled)
	if p, _ := res.Process("server"); p.State != ProcessKilled || p.Runs[0].ExitCode != -15 {
		t.Errorf("server: %+v, want KILLED by signal 15", p)
	}
	if exists(dir, "child_got_term") {
		t.Errorf("the server's child got SIGTERM")
	}
	pid, _ := strconv.Atoi(read(t, dir, "child.pid"))
	if !dies(pid) {
		t.Errorf("the server's child (pid %d) outlived the task", pid)
	}
}

func TestKillReachesTheTree(t *testing.T) {
	t.Parallel()
	// At the kill's deadline the runner kills the process's tree, even a
	// child that left its group and session (TaskRunnerHelper.kill_process
	// kills the top pid's descendants).
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid program:", err)
	}
	j := job(t, `{"processes": [{"name": "p", "cmdline": "trap '' TERM; setsid sleep 30 & echo $! > child.pid; touch started; wait"}]}`)
	dir := t.TempDir()
	ctx := cancelWhen(t, dir, "started")
	res, _, err := runTask(t, ctx, j, Options{Sandbox: dir, KillWait: 500 * time.Millisecond})
	mustEnd(t, res, err, TaskKilled)
	pid, _ := strconv.Atoi(read(t, dir, "child.pid"))
	if !dies(pid) {
		t.Errorf("the child in a session of its own (pid %d) outlived the task", pid)
	}
}

func TestProcessTree(t *testing.T) {
	t.Parallel()
	// bash runs under a coordinator, the runner's child, which started a
	// session: $PPID is the coordinator, and bash's group and session are
	// the coordinator's.
	j := job(t, `{"processes": [{"name": "p", "cmdline":
		"echo $$ $PPID > ids; s=$(</proc/$$/stat); echo ${s##*\\) } > stat; s=$(</proc/$PPID/stat); echo ${s##*\\) } > coordinator.stat; cp /proc/$PPID/cmdline coordinator.cmdline"}]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	ids := strings.Fields(read(t, dir, "ids"))
	stat := strings.Fields(read(t, dir, "stat")) // state ppid pgrp session ...
	coord := strings.Fields(read(t, dir, "coordinator.stat"))
	if len(ids) != 2 || len(stat) < 4 || len(coord) < 4 {
		t.Fatalf("ids %q, stat %q, coordinator's stat %q", ids, stat, coord)
	}
	bash, ppid := ids[0], ids[1]
	if bash == ppid || stat[1] != ppid {
		t.Errorf("bash %s, $PPID %s, its parent in /proc %s: want a coordinator between the runner and bash", bash, ppid, stat[1])
	}
	if stat[2] != ppid || stat[3] != ppid {
		t.Errorf("bash's group %s and session %s, want the coordinator's pid %s", stat[2], stat[3], ppid)
	}
	if coord[1] != strconv.Itoa(os.Getpid()) {
		t.Errorf("the coordinator's parent is %s, want the runner %d", coord[1], os.Getpid())
	}
	if argv := strings.Split(read(t, dir, "coordinator.cmdline"), "\x00"); argv[0] != coordinatorArg0 {
		t.Errorf("the coordinator's argv %q", argv)
	}
}

func TestKillZero(t *testing.T) {
	t.Parallel()
	// `kill 0` signals bash's group, the coordinator's: the coordinator
	// dies, the run is LOST, and Thermos runs it again without counting.
	j := job(t, `{"processes": [{"name": "p", "max_failures": 1, "cmdline": "if [ ! -e once ]; then touch once; kill 0; fi"}]}`)
	res, _, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	if got := runStates(t, res, "p"); !slices.Equal(got, []ProcessState{ProcessLost, ProcessSuccess}) {
		t.Errorf("runs %v, want LOST, SUCCESS", got)
	}
}

func TestInheritedDescriptors(t *testing.T) {
	t.Parallel()
	// A descriptor without close-on-exec, as nixaurora may inherit one:
	// Thermos hands processes 0, 1 and 2 only.
	fd, err := syscall.Open("/dev/null", syscall.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	j := job(t, `{"processes": [{"name": "p", "cmdline": "ls /proc/$$/fd > fds; true"}]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	if got := strings.Fields(read(t, dir, "fds")); !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Errorf("bash has descriptors %q (the test's open one is %d), want 0 1 2", got, fd)
	}
}

func TestMaxConcurrency(t *testing.T) {
	t.Parallel()
	var procs []string
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		procs = append(procs, `{"name": "`+n+`", "cmdline": "echo $EPOCHREALTIME > `+n+`.start; sleep 0.3; echo $EPOCHREALTIME > `+n+`.end"}`)
	}
	j := job(t, `{"max_concurrency": 2, "processes": [`+strings.Join(procs, ",")+`]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		edges = append(edges, edge{stamps(t, dir, n+".start")[0], +1}, edge{stamps(t, dir, n+".end")[0], -1})
	}
	sort.Slice(edges, func(i, k int) bool { return edges[i].at.Before(edges[k].at) })
	running, most := 0, 0
	for _, e := range edges {
		running += e.delta
		most = max(most, running)
	}
	if most != 2 {
		t.Errorf("at most %d processes ran at once, want 2", most)
	}
}

func TestFailedInitBlocksSuccessors(t *testing.T) {
	t.Parallel()
	for _, maxFailures := range []string{"1", "2"} {
		t.Run("task max_failures "+maxFailures, func(t *testing.T) {
			t.Parallel()
			j := job(t, `{"max_failures": `+maxFailures+`, "processes": [
				{"name": "nix_init", "cmdline": "echo 'cannot fetch' >&2; exit 3"},
				{"name": "web", "cmdline": "touch web_ran"},
				{"name": "worker", "cmdline": "touch worker_ran"}],
				"constraints": [{"order": ["nix_init", "web"]}, {"order": ["nix_init", "worker"]}]}`)
			res, dir, err := runTask(t, context.Background(), j, Options{})
			te := mustEnd(t, res, err, TaskFailed)
			for _, want := range []string{"process nix_init failed (exit 3) after 1 run", "process web never ran: it follows nix_init"} {
				if !strings.Contains(te.Error(), want) {
					t.Errorf("error %q does not say %q", te, want)
				}
			}
			if exists(dir, "web_ran") || exists(dir, "worker_ran") || exists(dir, ".logs/web") {
				t.Errorf("a successor of the failed init ran")
			}
			if got := read(t, dir, ".logs/nix_init/0/stderr"); got != "cannot fetch" {
				t.Errorf("init's stderr %q", got)
			}
		})
	}
}

func TestTaskMaxFailures(t *testing.T) {
	t.Parallel()
	// Two processes fail for good; the task tolerates fewer than max_failures.
	task := func(maxFailures string) string {
		return `{"max_failures": ` + maxFailures + `, "processes": [
			{"name": "bad1", "cmdline": "exit 1"}, {"name": "bad2", "cmdline": "sleep 0.2; exit 1"},
			{"name": "good", "cmdline": "sleep 0.4"}]}`
	}
	res, _, err := runTask(t, context.Background(), job(t, task("3")), Options{})
	mustSucceed(t, res, err)
	res, _, err = runTask(t, context.Background(), job(t, task("0")), Options{})
	mustSucceed(t, res, err)
	res, _, err = runTask(t, context.Background(), job(t, task("2")), Options{})
	mustEnd(t, res, err, TaskFailed)
	if p, _ := res.Process("good"); p.State != ProcessKilled {
		t.Errorf("good ended %s, want KILLED when the task failed", p.State)
	}
}

func TestKilledRunIsRerun(t *testing.T) {
	t.Parallel()
	// A run that dies of a signal is KILLED, not FAILED, and Thermos runs it
	// again without counting a failure.
	j := job(t, `{"processes": [{"name": "p", "max_failures": 1, "cmdline": "if [ ! -e once ]; then touch once; kill -KILL $$; fi"}]}`)
	res, _, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	if got := runStates(t, res, "p"); !slices.Equal(got, []ProcessState{ProcessKilled, ProcessSuccess}) {
		t.Errorf("runs %v", got)
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	j := job(t, `{"processes": [
		{"name": "init", "cmdline": "env > init.env; echo 'export GREETING=hello' > .thermos_profile"},
		{"name": "app", "cmdline": "env > app.env; pwd > app.cwd"}],
		"constraints": [{"order": ["init", "app"]}]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	me := currentUserForTest(t)
	want := map[string]string{"HOME": dir, "USER": me, "LOGNAME": me, "PATH": os.Getenv("PATH"),
		"BASH_ENV": filepath.Join(dir, ".thermos_profile"), "GREETING": "hello"}
	envOf := func(file string) map[string]string {
		env := map[string]string{}
		for _, line := range strings.Split(read(t, dir, file), "\n") {
			k, v, _ := strings.Cut(line, "=")
			env[k] = v
		}
		return env
	}
	app := envOf("app.env")
	for k, v := range want {
		if app[k] != v {
			t.Errorf("app: %s=%q, want %q", k, app[k], v)
		}
	}
	// bash adds PWD, SHLVL and _ itself; nothing else may leak in.
	for k := range app {
		if _, ok := want[k]; !ok && k != "PWD" && k != "SHLVL" && k != "_" && k != "OLDPWD" {
			t.Errorf("app's environment has %s", k)
		}
	}
	if init := envOf("init.env"); init["BASH_ENV"] != "" {
		t.Errorf("init ran with BASH_ENV=%s before .thermos_profile existed", init["BASH_ENV"])
	}
	if got := read(t, dir, "app.cwd"); got != dir {
		t.Errorf("cwd %s, want the sandbox %s", got, dir)
	}
}

func currentUserForTest(t *testing.T) string {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func TestLogLayout(t *testing.T) {
	t.Parallel()
	j := job(t, `{"processes": [{"name": "p", "min_duration": 0, "max_failures": 2,
		"cmdline": "`+count+`echo out $n; echo err $n >&2; [ $n -gt 1 ]"}]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	for run, want := range map[string]string{"0": "1", "1": "2"} {
		if got := read(t, dir, ".logs/p/"+run+"/stdout"); got != "out "+want {
			t.Errorf("run %s stdout %q", run, got)
		}
		if got := read(t, dir, ".logs/p/"+run+"/stderr"); got != "err "+want {
			t.Errorf("run %s stderr %q", run, got)
		}
	}
	if exists(dir, ".logs/p/2") {
		t.Errorf("a third run directory exists")
	}
}

func TestBindings(t *testing.T) {
	t.Parallel()
	j := job(t, `{"name": "web", "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}, "processes": [
		{"name": "server", "cmdline": "echo {{thermos.ports[http]}} {{thermos.ports[admin]}} {{thermos.ports[http]}} > ports"},
		{"name": "client", "cmdline": "echo {{thermos.ports[http]}} > client.port"},
		{"name": "info", "cmdline": "echo '{{name}} {{task.name}} {{role}} {{cluster}} {{environment}} {{instances}} {{mesos.instance}} {{thermos.user}} {{task.resources.cpu}}' > info; echo '{{thermos.task_id}}' > task_id; echo '{{mesos.hostname}}' > hostname"}]}`)
	rec := &recorder{}
	res, dir, err := runTask(t, context.Background(), j, Options{Instance: 1, Observer: rec})
	mustSucceed(t, res, err)
	if first := rec.taskStatuses[0]; first.State != TaskActive || first.TaskID != res.TaskID ||
		first.Sandbox != dir || !maps.Equal(first.Ports, res.Ports) {
		t.Errorf("the first task status %+v does not tell the task id, sandbox and ports of %+v", first, res)
	}

	ports := strings.Fields(read(t, dir, "ports"))
	if len(ports) != 3 || ports[0] != ports[2] || ports[0] == ports[1] {
		t.Errorf("ports %q: want the same port for the same name, another for another", ports)
	}
	if got := read(t, dir, "client.port"); got != ports[0] {
		t.Errorf("client got port %s for http, server %s", got, ports[0])
	}
	if strconv.Itoa(res.Ports["http"]) != ports[0] || strconv.Itoa(res.Ports["admin"]) != ports[1] {
		t.Errorf("result ports %v, processes got %q", res.Ports, ports)
	}
	if got, want := read(t, dir, "info"), "info web www-data devcluster devel 2 1 www-data 1.0"; got != want {
		t.Errorf("info %q, want %q", got, want)
	}
	id := read(t, dir, "task_id")
	if id != res.TaskID || !regexp.MustCompile(`^www-data-devel-hello-1-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Errorf("task id %q (result: %q)", id, res.TaskID)
	}
	if host, _ := os.Hostname(); read(t, dir, "hostname") != host {
		t.Errorf("hostname %q, want %q", read(t, dir, "hostname"), host)
	}
	if p, _ := res.Process("client"); p.Cmdline != "echo "+ports[0]+" > client.port" {
		t.Errorf("client's cmdline as run: %q", p.Cmdline)
	}
}

func TestUnknownBinding(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "sandbox")
	j := job(t, `{"processes": [{"name": "a", "cmdline": "touch ran"}, {"name": "b", "cmdline": "echo {{thermos.nope}} {{mesos.instance}}"}]}`)
	res, err := Run(context.Background(), j, Options{Sandbox: dir})
	if !errors.Is(err, ErrBinding) || res != nil {
		t.Fatalf("Run: %v, %v; want ErrBinding", res, err)
	}
	if !strings.Contains(err.Error(), "process b") || !strings.Contains(err.Error(), "{{thermos.nope}}") {
		t.Errorf("error %q does not name the process and the binding", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the sandbox was made before the bindings were checked")
	}
}

func TestInvalidTasks(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ task, want string }{
		"cycle": {`{"processes": [{"name": "a", "cmdline": "true"}, {"name": "b", "cmdline": "true"}],
			"constraints": [{"order": ["a", "b"]}, {"order": ["b", "a"]}]}`, "cycles"},
		"after a daemon": {`{"processes": [{"name": "a", "daemon": true, "cmdline": "true"}, {"name": "b", "cmdline": "true"}],
			"constraints": [{"order": ["a", "b"]}]}`, "daemon"},
		"after an ephemeral": {`{"processes": [{"name": "a", "ephemeral": true, "cmdline": "true"}, {"name": "b", "cmdline": "true"}],
			"constraints": [{"order": ["a", "b"]}]}`, "ephemeral"},
		"regular and final": {`{"processes": [{"name": "a", "cmdline": "true"}, {"name": "b", "final": true, "cmdline": "true"}],
			"constraints": [{"order": ["a", "b"]}]}`, "dependencies"},
		"empty order": {`{"processes": [{"name": "a", "cmdline": "true"}], "constraints": [{"order": []}]}`, "dependencies"},
		"duplicate":   {`{"processes": [{"name": "a", "cmdline": "true"}, {"name": "a", "cmdline": "true"}]}`, "two processes"},
		"instance":    {`{"processes": [{"name": "a", "cmdline": "true"}]}`, "instance 2"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "sandbox")
			_, err := Run(context.Background(), job(t, c.task), Options{Sandbox: dir, Instance: instance(name)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run: %v, want an error about %q", err, c.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("the sandbox was made for an invalid task")
			}
		})
	}
	// Only unknown names: ignored, as Thermos does.
	j := job(t, `{"processes": [{"name": "a", "cmdline": "true"}], "constraints": [{"order": ["x", "y"]}]}`)
	res, _, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
}

// instance is 2 (out of range) for the case named "instance", else 0.
func instance(name string) int {
	if name == "instance" {
		return 2
	}
	return 0
}

func TestNothingOutlivesRun(t *testing.T) {
	t.Parallel()
	// A process that leaves a child behind and exits: Thermos kills the
	// rest of its process group when it ends.
	j := job(t, `{"processes": [{"name": "p", "cmdline": "sleep 30 & echo $! > child.pid"}]}`)
	res, dir, err := runTask(t, context.Background(), j, Options{})
	mustSucceed(t, res, err)
	pid, _ := strconv.Atoi(read(t, dir, "child.pid"))
	deadline := time.Now().Add(2 * time.Second)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("the background child (pid %d) outlived its process", pid)
	}
}

func TestCannotStart(t *testing.T) {
	t.Parallel()
	// A file where the log directory should be: the run cannot start, which
	// Thermos counts as a failed run.
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".logs"), 0o755)
	os.WriteFile(filepath.Join(dir, ".logs", "p"), nil, 0o644)
	j := job(t, `{"processes": [{"name": "p", "cmdline": "true"}]}`)
	res, _, err := runTask(t, context.Background(), j, Options{Sandbox: dir})
	te := mustEnd(t, res, err, TaskFailed)
	p, _ := res.Process("p")
	if len(p.Runs) != 1 || p.State != ProcessFailed || !p.Runs[0].Start.IsZero() || !strings.Contains(p.Runs[0].Message, "cannot start") {
		t.Fatalf("p: %+v", p)
	}
	if s := p.Runs[0].String(); !strings.HasPrefix(s, "p run 0: FAILED: cannot start") {
		t.Errorf("status %q", s)
	}
	if !strings.Contains(te.Error(), "process p failed (cannot start") {
		t.Errorf("error %q", te)
	}
}

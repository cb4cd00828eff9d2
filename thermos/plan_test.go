package thermos

import (
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
)

func testPlan(t *testing.T, task string) *plan {
	t.Helper()
	j := job(t, task).Defaults()
	p, err := newPlan(j.Task, func(p *aurora.Process) bool { return !p.IsFinal() })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPlanWaits(t *testing.T) {
	t.Parallel()
	p := testPlan(t, `{"processes": [{"name": "a", "min_duration": 5, "max_failures": 0, "cmdline": "x"}, {"name": "b", "cmdline": "x"}]}`)
	now := time.Unix(1000, 0)
	a, b := p.procs["a"], p.procs["b"]
	if got := p.runnable(now); len(got) != 2 {
		t.Fatalf("runnable %v: min_duration is no delay before the first run", got)
	}
	p.setRunning(a)
	p.addFailure(a, now)
	if w, ok := p.minWait(now.Add(2 * time.Second)); !ok || w != 3*time.Second {
		t.Errorf("minWait %v %v, want 3s: min_duration counts from the end of the last run", w, ok)
	}
	// b may start now, but is held back (say by max_concurrency): it is no
	// reason to wake up, or the runner would spin.
	if w, ok := p.minWait(now.Add(5 * time.Second)); ok {
		t.Errorf("minWait %v with nothing waiting for its min_duration", w)
	}
	p.setRunning(b)
	p.lost(b, now)
	if got := p.runnable(now); len(got) != 0 {
		t.Errorf("a lost run is restarted at once: %v", got)
	}
	if got := p.runnable(now.Add(lostDelay)); len(got) != 1 || got[0] != b {
		t.Errorf("runnable after the lost delay: %v", got)
	}
	if b.failures != 0 {
		t.Errorf("a lost run counted as a failure")
	}
}

func TestPlanDeadlock(t *testing.T) {
	t.Parallel()
	p := testPlan(t, `{"processes": [{"name": "a", "cmdline": "x"}, {"name": "b", "cmdline": "x"}, {"name": "e", "ephemeral": true, "cmdline": "x"}],
		"constraints": [{"order": ["a", "b"]}]}`)
	now := time.Unix(1000, 0)
	a, e := p.procs["a"], p.procs["e"]
	p.setRunning(a)
	p.setRunning(e)
	p.addFailure(a, now)
	if p.deadlocked() {
		t.Errorf("deadlocked while an ephemeral process runs (Thermos counts it as running)")
	}
	p.addFailure(e, now) // an ephemeral process out of failures is finished, not failed
	if e.state != planFinished || !p.deadlocked() || p.complete() {
		t.Errorf("e %v, deadlocked %v, complete %v", e.state, p.deadlocked(), p.complete())
	}
	if f := p.failed(); len(f) != 1 || f[0] != "a" {
		t.Errorf("failed %v", f)
	}
}

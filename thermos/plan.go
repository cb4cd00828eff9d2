package thermos

import (
	"fmt"
	"time"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// This file is Thermos' planner (apache/thermos/common/planner.py): Planner
// (what may run given the order constraints) and TaskPlanner (daemon,
// ephemeral, max_failures, min_duration, the run limit) in one type. One
// plan holds the regular processes, another the final ones.

// runLimit is the production runner's cap on the runs (successes plus
// failures) of one process: thermos_runner.py's CappedTaskPlanner.
const runLimit = 100

// lostDelay keeps a process whose run was killed or lost (which Thermos
// reruns at once, without counting a failure) from being restarted in a
// tight loop; Thermos' run loop waits at least a second after a launch.
const lostDelay = time.Second

type planState int

const (
	planIdle     planState = iota // not running: runnable once its predecessors finished
	planRunning                   // a run is under way
	planFinished                  // done for good, successfully (or an ephemeral one out of failures)
	planFailed                    // done for good, failed
)

type planProc struct {
	name        string
	daemon      bool
	ephemeral   bool
	maxFailures int64
	minDuration time.Duration

	state        planState
	deps         []string
	failures     int
	successes    int
	lastTerminal time.Time // end of the last run that succeeded or failed
	notBefore    time.Time // after a lost run
}

type plan struct {
	procs map[string]*planProc
	order []*planProc // task order
	limit int
}

// newPlan plans the processes of task for which keep returns true, as
// TaskPlanner.extract_dependencies: an order list naming only processes of
// other plans (or unknown ones) is ignored; one mixing them is invalid.
func newPlan(task *aurora.Task, keep func(*aurora.Process) bool) (*plan, error) {
	p := &plan{procs: map[string]*planProc{}, limit: runLimit}
	for i := range task.Processes {
		proc := &task.Processes[i]
		if !keep(proc) {
			continue
		}
		pp := &planProc{
			name:        *proc.Name,
			daemon:      proc.IsDaemon(),
			ephemeral:   proc.IsEphemeral(),
			maxFailures: intOr(proc.MaxFailures, 1),
			minDuration: time.Duration(intOr(proc.MinDuration, 5)) * time.Second,
		}
		p.procs[pp.name] = pp
		p.order = append(p.order, pp)
	}
	for _, c := range task.Constraints {
		in := 0
		for _, n := range c.Order {
			if p.procs[n] != nil {
				in++
			}
		}
		if in == 0 && len(c.Order) > 0 {
			continue // another plan's, or unknown names only
		}
		if in != len(c.Order) || len(c.Order) == 0 {
			return nil, fmt.Errorf("invalid process dependencies: order %q mixes processes of one plan with others", c.Order)
		}
		for k := 1; k < len(c.Order); k++ {
			before, after := p.procs[c.Order[k-1]], p.procs[c.Order[k]]
			if before.daemon {
				return nil, fmt.Errorf("process %s may not depend upon daemon process %s", after.name, before.name)
			}
			if !after.ephemeral && before.ephemeral {
				return nil, fmt.Errorf("non-ephemeral process %s may not depend upon ephemeral process %s", after.name, before.name)
			}
			if !contains(after.deps, before.name) {
				after.deps = append(after.deps, before.name)
			}
		}
	}
	if err := p.checkCycles(); err != nil {
		return nil, err
	}
	return p, nil
}

func intOr(v *int64, def int64) int64 {
	if v == nil {
		return def
	}
	return *v
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkCycles is Planner.satisfiable: peel off processes without
// unsatisfied dependencies until none is left.
func (p *plan) checkCycles() error {
	done := map[string]bool{}
	for progress := true; progress; {
		progress = false
		for _, pp := range p.order {
			if done[pp.name] {
				continue
			}
			ready := true
			for _, d := range pp.deps {
				ready = ready && done[d]
			}
			if ready {
				done[pp.name] = true
				progress = true
			}
		}
	}
	if len(done) != len(p.order) {
		return fmt.Errorf("cycles detected in the task schedule")
	}
	return nil
}

// eligible: not running nor done, and every predecessor finished.
func (p *plan) eligible(pp *planProc) bool {
	if pp.state != planIdle {
		return false
	}
	for _, d := range pp.deps {
		if p.procs[d].state != planFinished {
			return false
		}
	}
	return true
}

// wait is how long pp must still wait before its next run (TaskPlanner.get_wait).
func (pp *planProc) wait(now time.Time) time.Duration {
	var w time.Duration
	if !pp.lastTerminal.IsZero() {
		w = pp.minDuration - now.Sub(pp.lastTerminal)
	}
	if d := pp.notBefore.Sub(now); d > w {
		w = d
	}
	return w
}

// runnable are the processes that may start now, in task order.
func (p *plan) runnable(now time.Time) []*planProc {
	var out []*planProc
	for _, pp := range p.order {
		if p.eligible(pp) && pp.wait(now) <= 0 {
			out = append(out, pp)
		}
	}
	return out
}

// minWait is how long until the first process waiting for its
// min_duration may start (ok false when none waits). Processes runnable now
// but held back by max_concurrency wait for a run to end instead.
func (p *plan) minWait(now time.Time) (time.Duration, bool) {
	var best time.Duration
	found := false
	for _, pp := range p.order {
		if !p.eligible(pp) {
			continue
		}
		if w := pp.wait(now); w > 0 && (!found || w < best) {
			best, found = w, true
		}
	}
	return best, found
}

func (p *plan) running() int {
	n := 0
	for _, pp := range p.order {
		if pp.state == planRunning {
			n++
		}
	}
	return n
}

func (p *plan) setRunning(pp *planProc) { pp.state = planRunning }

func (p *plan) reachedRunLimit(pp *planProc) bool {
	return p.limit > 0 && pp.successes+pp.failures >= p.limit
}

// addSuccess: a daemon goes back to idle, anything else is finished.
func (p *plan) addSuccess(pp *planProc, now time.Time) {
	pp.lastTerminal = now
	pp.successes++
	switch {
	case p.reachedRunLimit(pp):
		pp.state = planFailed
	case pp.daemon:
		pp.state = planIdle
	default:
		pp.state = planFinished
	}
}

// addFailure: retried under max_failures (0: forever); past it, an
// ephemeral process is finished and any other failed.
func (p *plan) addFailure(pp *planProc, now time.Time) {
	pp.lastTerminal = now
	pp.failures++
	switch {
	case p.reachedRunLimit(pp):
		pp.state = planFailed
	case pp.maxFailures == 0 || int64(pp.failures) < pp.maxFailures:
		pp.state = planIdle
	case pp.ephemeral:
		pp.state = planFinished
	default:
		pp.state = planFailed
	}
}

// lost puts back a process whose run was killed or lost, without counting
// a failure (TaskPlanner.lost).
func (p *plan) lost(pp *planProc, now time.Time) {
	pp.state = planIdle
	pp.notBefore = now.Add(lostDelay)
}

// complete: every non-ephemeral process finished or failed (ephemeral ones
// may still run).
func (p *plan) complete() bool {
	for _, pp := range p.order {
		if !pp.ephemeral && pp.state != planFinished && pp.state != planFailed {
			return false
		}
	}
	return true
}

// deadlocked: nothing runs, nothing can run or wait to run, and yet the
// plan is not complete (a failed process holds up its successors).
func (p *plan) deadlocked() bool {
	if p.complete() || p.running() > 0 {
		return false
	}
	for _, pp := range p.order {
		if p.eligible(pp) {
			return false
		}
	}
	return true
}

func (p *plan) failed() []string {
	var out []string
	for _, pp := range p.order {
		if pp.state == planFailed {
			out = append(out, pp.name)
		}
	}
	return out
}

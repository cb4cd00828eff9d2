package aurora

import "fmt"

// Thermos plans regular and final processes separately
// (apache/thermos/common/planner.py, TaskPlanner.extract_dependencies, run
// once with the regular processes and once with the final ones). For each
// plan, an order list is:
//   - used when every name in it is a process of that plan;
//   - ignored when no name in it is (so a list naming only unknown
//     processes is ignored by both plans);
//   - "Invalid process dependencies!" otherwise: a list mixing regular and
//     final processes, or real and unknown names, and the empty list (which
//     is both a subset of and disjoint from every set).
//
// Within a used list, nothing may follow a daemon, and a non-ephemeral
// process may not follow an ephemeral one. Then the plan must be acyclic.

type planProcess struct {
	name                     string
	daemon, ephemeral, final bool
}

// plan checks the task's order constraints, on interpolated names.
func (v *validator) plan() {
	t := v.d.Task
	if t == nil {
		return
	}
	var procs []planProcess
	for i, p := range t.Processes {
		if p.Name == nil {
			continue
		}
		name, _ := v.value(index("task.processes", i) + ".name")
		procs = append(procs, planProcess{name: name, daemon: *p.Daemon, ephemeral: *p.Ephemeral, final: *p.Final})
	}
	var orders [][]string
	var paths []string
	for i, c := range t.Constraints {
		if c.Order == nil {
			continue // Constraint[order] is required.
		}
		rel := index("task.constraints", i) + ".order"
		names := make([]string, len(c.Order))
		for k := range c.Order {
			names[k], _ = v.value(index(rel, k))
		}
		orders = append(orders, names)
		paths = append(paths, v.at(rel))
	}
	v.ps.list = append(v.ps.list, checkPlan(procs, orders, paths, v.at("task.constraints"))...)
}

func checkPlan(procs []planProcess, orders [][]string, paths []string, constraintsPath string) []Problem {
	var ps problems
	reported := map[string]bool{}
	report := func(path, msg string) {
		if !reported[path+"\x00"+msg] {
			reported[path+"\x00"+msg] = true
			ps.add(path, "%s", msg)
		}
	}
	for _, final := range []bool{false, true} {
		byName := map[string]planProcess{} // as Thermos' dict: the last of a name wins
		for _, p := range procs {
			if p.final == final {
				byName[p.name] = p
			}
		}
		deps := map[string]map[string]bool{}
		for i, order := range orders {
			subset, disjoint := true, true
			for _, name := range order {
				if _, ok := byName[name]; ok {
					disjoint = false
				} else {
					subset = false
				}
			}
			if subset == disjoint {
				report(paths[i], "Invalid process dependencies!")
				continue
			}
			if !subset {
				continue
			}
			for k := 1; k < len(order); k++ {
				succ, pred := byName[order[k]], byName[order[k-1]]
				if pred.daemon {
					report(paths[i], fmt.Sprintf("Process %s may not depend upon daemon process %s", succ.name, pred.name))
				}
				if !succ.ephemeral && pred.ephemeral {
					report(paths[i], fmt.Sprintf(
						"Non-ephemeral process %s may not depend upon ephemeral process %s", succ.name, pred.name))
				}
				if deps[succ.name] == nil {
					deps[succ.name] = map[string]bool{}
				}
				deps[succ.name][pred.name] = true
			}
		}
		if !satisfiable(byName, deps) {
			report(constraintsPath, "Cycles detected in the task schedule!")
		}
	}
	return ps.list
}

// satisfiable is Planner.satisfiable: every process can run once the ones it
// depends on have.
func satisfiable(procs map[string]planProcess, deps map[string]map[string]bool) bool {
	done := map[string]bool{}
	for progress := true; progress; {
		progress = false
		for name := range procs {
			if done[name] {
				continue
			}
			ready := true
			for pred := range deps[name] {
				if !done[pred] {
					ready = false
					break
				}
			}
			if ready {
				done[name] = true
				progress = true
			}
		}
	}
	return len(done) == len(procs)
}

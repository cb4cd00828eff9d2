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
		name, _ := v.taskValue(index("task.processes", i) + ".name")
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
		known := false
		for k := range c.Order {
			names[k], _ = v.taskValue(index(rel, k))
			for _, p := range procs {
				known = known || p.name == names[k]
			}
		}
		if len(names) > 0 && !known {
			v.warn.add(v.at(rel), "the order names no process of the task: Thermos ignores it")
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
		// As Thermos' dict: the last process of a name wins, and each name
		// is one node of the plan.
		id := map[string]int{}
		var plan []planProcess
		for _, p := range procs {
			if p.final != final {
				continue
			}
			if i, ok := id[p.name]; ok {
				plan[i] = p
				continue
			}
			id[p.name] = len(plan)
			plan = append(plan, p)
		}
		var edges [][2]int // {pred, succ}, as written; repeats are harmless
		for i, order := range orders {
			subset, disjoint := true, true
			for _, name := range order {
				if _, ok := id[name]; ok {
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
				pi, si := id[order[k-1]], id[order[k]]
				pred, succ := plan[pi], plan[si]
				if pred.daemon {
					report(paths[i], fmt.Sprintf("Process %s may not depend upon daemon process %s", succ.name, pred.name))
				}
				if !succ.ephemeral && pred.ephemeral {
					report(paths[i], fmt.Sprintf(
						"Non-ephemeral process %s may not depend upon ephemeral process %s", succ.name, pred.name))
				}
				edges = append(edges, [2]int{pi, si})
			}
		}
		if !satisfiable(len(plan), edges) {
			report(constraintsPath, "Cycles detected in the task schedule!")
		}
	}
	return ps.list
}

// satisfiable is Planner.satisfiable (every process can run once the ones
// it depends on have), computed by Kahn's algorithm in time linear in nodes
// plus edges rather than by Thermos' repeated passes, which are quadratic
// or worse in the number of processes. A repeated edge counts once in the
// in-degree per occurrence and is released once per occurrence, so it
// changes nothing; a process after itself is never released.
func satisfiable(nodes int, edges [][2]int) bool {
	indegree := make([]int, nodes)
	start := make([]int, nodes+1) // successors of n: succs[start[n]:start[n+1]]
	for _, e := range edges {
		indegree[e[1]]++
		start[e[0]+1]++
	}
	for n := 0; n < nodes; n++ {
		start[n+1] += start[n]
	}
	succs := make([]int, len(edges))
	next := append([]int(nil), start[:nodes]...)
	for _, e := range edges {
		succs[next[e[0]]] = e[1]
		next[e[0]]++
	}
	var ready []int
	for n, d := range indegree {
		if d == 0 {
			ready = append(ready, n)
		}
	}
	done := 0
	for len(ready) > 0 {
		n := ready[len(ready)-1]
		ready = ready[:len(ready)-1]
		done++
		for _, s := range succs[start[n]:start[n+1]] {
			if indegree[s]--; indegree[s] == 0 {
				ready = append(ready, s)
			}
		}
	}
	return done == nodes
}

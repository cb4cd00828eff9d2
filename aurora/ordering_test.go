package aurora

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// planJob is a job whose task has the given processes and constraints.
func planJob(t *testing.T, processes, constraints string) Job {
	t.Helper()
	return parseJob(t, patched(t, `{"name": "web", "task": {"name": "web", "processes": `+processes+`, "constraints": `+constraints+`}}`))
}

const plainProcesses = `[
  {"name": "a", "cmdline": "true"}, {"name": "b", "cmdline": "true"}, {"name": "c", "cmdline": "true"},
  {"name": "d", "cmdline": "true", "daemon": true}, {"name": "e", "cmdline": "true", "ephemeral": true},
  {"name": "e2", "cmdline": "true", "ephemeral": true},
  {"name": "f", "cmdline": "true", "final": true}, {"name": "g", "cmdline": "true", "final": true}]`

func TestOrderingAccepts(t *testing.T) {
	for _, tc := range []struct{ name, constraints string }{
		{"no constraints", `[]`},
		{"a chain", `[{"order": ["a", "b", "c"]}]`},
		{"overlapping chains", `[{"order": ["a", "b"]}, {"order": ["a", "c"]}, {"order": ["b", "c"]}]`},
		{"a daemon last", `[{"order": ["a", "d"]}]`},
		{"an ephemeral after a regular process", `[{"order": ["a", "e"]}]`},
		{"an ephemeral after an ephemeral", `[{"order": ["e", "e2"]}]`},
		{"final processes among themselves", `[{"order": ["f", "g"]}]`},
		{"a list naming only unknown processes is ignored", `[{"order": ["x", "y"]}, {"order": ["z"]}]`},
		{"a one-process list", `[{"order": ["a"]}]`},
		{"names interpolated", `[{"order": ["{{task.processes[0].name}}", "b"]}]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := planJob(t, plainProcesses, tc.constraints).Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestOrderingRejects(t *testing.T) {
	const order0, order1 = "task.constraints[0].order", "task.constraints[1].order"
	for _, tc := range []struct {
		name, constraints string
		want              []Problem
	}{
		{"a cycle", `[{"order": ["a", "b"]}, {"order": ["b", "c", "a"]}]`,
			[]Problem{p("task.constraints", "Cycles detected in the task schedule!")}},
		{"a process after itself", `[{"order": ["a", "a"]}]`,
			[]Problem{p("task.constraints", "Cycles detected in the task schedule!")}},
		{"a cycle of final processes", `[{"order": ["f", "g"]}, {"order": ["g", "f"]}]`,
			[]Problem{p("task.constraints", "Cycles detected in the task schedule!")}},
		{"a process after a daemon", `[{"order": ["d", "a"]}]`,
			[]Problem{p(order0, "Process a may not depend upon daemon process d")}},
		{"a process after an ephemeral one", `[{"order": ["e", "a"]}]`,
			[]Problem{p(order0, "Non-ephemeral process a may not depend upon ephemeral process e")}},
		{"regular and final mixed", `[{"order": ["a", "f"]}]`, []Problem{p(order0, "Invalid process dependencies!")}},
		{"final then regular", `[{"order": ["f", "a"]}]`, []Problem{p(order0, "Invalid process dependencies!")}},
		{"known and unknown mixed", `[{"order": ["a", "x"]}]`, []Problem{p(order0, "Invalid process dependencies!")}},
		{"final and unknown mixed", `[{"order": ["x", "f"]}]`, []Problem{p(order0, "Invalid process dependencies!")}},
		{"an empty list", `[{"order": ["a", "b"]}, {"order": []}]`, []Problem{p(order1, "Invalid process dependencies!")}},
		{"every problem reported", `[{"order": ["d", "e", "b"]}, {"order": ["a", "zz"]}, {"order": ["b", "a"]}, {"order": ["a", "b"]}]`, []Problem{
			p(order0, "Process e may not depend upon daemon process d"),
			p(order0, "Non-ephemeral process b may not depend upon ephemeral process e"),
			p(order1, "Invalid process dependencies!"),
			p("task.constraints", "Cycles detected in the task schedule!"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := planJob(t, plainProcesses, tc.constraints).Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			wantProblems(t, problemsOf(t, err, ErrClient), tc.want...)
		})
	}
}

// checkPlan on its own, with the shape of Thermos' planner tests.
func TestCheckPlan(t *testing.T) {
	procs := []planProcess{{name: "init"}, {name: "app", daemon: true}, {name: "final_init", final: true}, {name: "save", final: true}}
	orders := [][]string{{"init", "app"}, {"final_init", "save"}}
	if ps := checkPlan(procs, orders, []string{"o0", "o1"}, "c"); len(ps) != 0 {
		data, _ := json.Marshal(ps)
		t.Errorf("the init layout of nix-aurora: %s", data)
	}
}

// largePlan is n processes p0..p(n-1) and order lists shaped by kind:
// "chain" orders them all in one list, "wide" orders p0 before each other
// process in a list of its own, "cycle" is the chain closed by a last list
// ordering p(n-1) before p0.
func largePlan(tb testing.TB, n int, kind string) ([]planProcess, [][]string) {
	tb.Helper()
	procs := make([]planProcess, n)
	names := make([]string, n)
	for i := range procs {
		names[i] = fmt.Sprintf("p%d", i)
		procs[i] = planProcess{name: names[i]}
	}
	switch kind {
	case "chain":
		return procs, [][]string{names}
	case "wide":
		var orders [][]string
		for _, name := range names[1:] {
			orders = append(orders, []string{names[0], name})
		}
		return procs, orders
	case "cycle":
		return procs, [][]string{names, {names[n-1], names[0]}}
	}
	tb.Fatalf("no plan shape %q", kind)
	return nil, nil
}

// largePlanJob is largePlan as a job document.
func largePlanJob(tb testing.TB, n int, kind string) []byte {
	tb.Helper()
	procs, orders := largePlan(tb, n, kind)
	type process struct {
		Name    string `json:"name"`
		Cmdline string `json:"cmdline"`
	}
	type constraint struct {
		Order []string `json:"order"`
	}
	ps := make([]process, len(procs))
	for i, p := range procs {
		ps[i] = process{p.name, "true"}
	}
	cs := make([]constraint, len(orders))
	for i, o := range orders {
		cs[i] = constraint{o}
	}
	p, err := json.Marshal(map[string]any{"name": "web", "task": map[string]any{"name": "web", "processes": ps, "constraints": cs}})
	if err != nil {
		tb.Fatal(err)
	}
	return patched(tb, string(p))
}

// The ordering check is linear: 20k processes in a chain, a fan and a
// cycle take milliseconds (Thermos' repeated passes took minutes). The
// bound is generous for the race detector and a busy machine.
func TestCheckPlanLarge(t *testing.T) {
	for _, kind := range []string{"chain", "wide", "cycle"} {
		t.Run(kind, func(t *testing.T) {
			procs, orders := largePlan(t, 20000, kind)
			paths := make([]string, len(orders))
			for i := range paths {
				paths[i] = index("task.constraints", i) + ".order"
			}
			start := time.Now()
			ps := checkPlan(procs, orders, paths, "task.constraints")
			if elapsed := time.Since(start); elapsed > 5*time.Second {
				t.Errorf("checking the order of 20000 processes took %s", elapsed)
			}
			if kind == "cycle" {
				wantProblems(t, ps, p("task.constraints", "Cycles detected in the task schedule!"))
			} else {
				wantProblems(t, ps)
			}
		})
	}
}

// A whole 20k-process chain validates in about half a second of CPU (see
// BenchmarkValidateLargePlan); the bound allows for the race detector
// (ten times slower) on a loaded machine, and is still a small part of the
// minutes the check took before.
func TestValidateLargeChain(t *testing.T) {
	data := largePlanJob(t, 20000, "chain")
	start := time.Now()
	if _, err := ValidateDocument(data); err != nil {
		t.Error(err)
	}
	if elapsed := time.Since(start); elapsed > 60*time.Second {
		t.Errorf("validating a chain of 20000 processes took %s", elapsed)
	}
}

// BenchmarkValidateLargePlan reports the CPU time of validating 20k-process
// jobs (cpu-s/op: user and system, garbage collection included).
func BenchmarkValidateLargePlan(b *testing.B) {
	for _, kind := range []string{"chain", "wide", "cycle"} {
		b.Run(kind, func(b *testing.B) {
			data := largePlanJob(b, 20000, kind)
			before := cpuTime(b)
			for b.Loop() {
				ValidateDocument(data)
			}
			b.ReportMetric((cpuTime(b)-before).Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package aurora

import (
	"encoding/json"
	"testing"
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

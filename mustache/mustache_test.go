package mustache

import (
	"errors"
	"strings"
	"testing"
)

// tree is a job-like struct: {role, cluster, task: {name, processes: [{name, cmdline}]}}.
func tree(cmdline string) (*Value, *Value) {
	str := func(s string) *Value { return &Value{Kind: Scalar, Text: s, Template: true} }
	root := &Value{Kind: Struct, Type: "MesosJob", Fields: map[string]*Value{
		"role": str("alice"), "cluster": str("c1"), "name": str("{{task.name}}"),
	}}
	task := &Value{Kind: Struct, Type: "Task", Fields: map[string]*Value{"name": str("{{processes[0].name}}")}, Parent: root}
	procs := &Value{Kind: List, Parent: task}
	proc := &Value{Kind: Struct, Type: "Process", Fields: map[string]*Value{"name": str("hello"), "cmdline": str(cmdline)}, Parent: procs}
	procs.Elems = []*Value{proc}
	task.Fields["processes"] = procs
	root.Fields["task"] = task
	for _, v := range []*Value{root, task, proc} {
		for k, f := range v.Fields {
			f.Parent = v
			v.Names = append(v.Names, k)
		}
	}
	return root, proc.Fields["cmdline"]
}

func TestParseRef(t *testing.T) {
	for addr, want := range map[string]string{
		"a.b[c]":                      "",
		"thermos.ports[my-port.v2/x]": "",
		"[0].x":                       "",
		"a..b":                        "Badly formed address .a..b",
		"1a":                          "Invalid address: {{1a}}",
		"é":                           "Invalid address: {{é}}",
		"a.é":                         "Badly formed address .a.é", // Python 2.7's \w is ASCII
		"thermos.ports[é]":            "Badly formed address .thermos.ports[é]",
	} {
		r, err := ParseRef(addr)
		switch {
		case want == "" && (err != nil || r.Address() != addr):
			t.Errorf("ParseRef(%q) = %v, %v", addr, r, err)
		case want != "" && (err == nil || err.Error() != want):
			t.Errorf("ParseRef(%q) error %v, want %q", addr, err, want)
		}
	}
}

func TestInterpolate(t *testing.T) {
	instance, host, id := 3, "node1", "tid"
	node := Node{Instance: &instance, Hostname: &host, TaskID: &id, Ports: func(name string) (int, error) {
		if name == "http" {
			return 8080, nil
		}
		return 0, ErrUnbound
	}}
	for _, tc := range []struct {
		cmdline, client, node string
		unbound               []string // after the node's pass
	}{
		{"{{name}} {{task.name}} {{role}}", "hello hello alice", "hello hello alice", nil},
		{"{{mesos.role}}@{{mesos.cluster}} {{thermos.user}}", "alice@c1 alice", "alice@c1 alice", nil},
		{"{{&role}} {{&&x}}", "alice {{x}}", "alice {{x}}", []string{"{{x}}"}}, // each pass drops one &
		{"{{mesos.instance}} {{mesos.hostname}} {{thermos.task_id}} {{thermos.ports[http]}}",
			"{{mesos.instance}} {{mesos.hostname}} {{thermos.task_id}} {{thermos.ports[http]}}", "3 node1 tid 8080", nil},
		{"{{thermos.ports[db]}}", "{{thermos.ports[db]}}", "{{thermos.ports[db]}}", []string{"{{thermos.ports[db]}}"}},
		{"{{x[{{mesos.instance}}]}}", "{{x[{{mesos.instance}}]}}", "{{x[3]}}", []string{"{{x[3]}}"}},
		{"{{processes[-1].cmdline}}", "", "", nil}, // itself: a cycle, reported
	} {
		root, cmd := tree(tc.cmdline)
		_ = root
		client := New()
		if got := client.Value(cmd).Out; got != tc.client {
			t.Errorf("client %q = %q, want %q", tc.cmdline, got, tc.client)
		}
		res := client.On(node).Value(cmd)
		if res.Out != tc.node {
			t.Errorf("node %q = %q, want %q", tc.cmdline, res.Out, tc.node)
		}
		var unbound []string
		for _, r := range res.Unbound {
			unbound = append(unbound, r.String())
		}
		if strings.Join(unbound, " ") != strings.Join(tc.unbound, " ") {
			t.Errorf("node %q: unbound %v, want %v", tc.cmdline, unbound, tc.unbound)
		}
	}
}

func TestStrict(t *testing.T) {
	_, cmd := tree("echo {{nope}} {{role}}")
	if s, err := New().String(cmd); err != nil || s != "echo {{nope}} alice" {
		t.Errorf("lenient: %q, %v", s, err)
	}
	if _, err := New(Strict()).String(cmd); !errors.Is(err, ErrInterpolate) || !strings.Contains(err.Error(), "unbound references {{nope}}") {
		t.Errorf("strict: %v", err)
	}
	_, cycle := tree("{{cmdline}}")
	if _, err := New().String(cycle); err == nil || !strings.Contains(err.Error(), "Unable to interpolate {{cmdline}}!  Maximum replacements reached.") {
		t.Errorf("cycle: %v", err)
	}
	_, structRef := tree("{{task}}")
	if _, err := New().String(structRef); err == nil || !strings.Contains(err.Error(), "{{task}} refers to a Task, not to a value") {
		t.Errorf("struct: %v", err)
	}
}

// Python 2.7's str() and repr() of floats (checked with Python 2.7.18).
func TestFormatFloat(t *testing.T) {
	for f, want := range map[float64][2]string{
		1:                   {"1.0", "1.0"},
		0.5:                 {"0.5", "0.5"},
		1e-5:                {"1e-05", "1e-05"},
		1e16:                {"1e+16", "1e+16"},
		1.0 / 3:             {"0.333333333333", "0.3333333333333333"},
		0.30000000000000004: {"0.3", "0.30000000000000004"},
		123456789012345.0:   {"1.23456789012e+14", "123456789012345.0"},
		123456789012.0:      {"123456789012.0", "123456789012.0"},
		-2.5:                {"-2.5", "-2.5"},
	} {
		if got := FormatFloat(f); got != want[0] {
			t.Errorf("FormatFloat(%v) = %s, want %s", f, got, want[0])
		}
		if got := ReprFloat(f); got != want[1] {
			t.Errorf("ReprFloat(%v) = %s, want %s", f, got, want[1])
		}
	}
}

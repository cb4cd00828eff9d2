package thermos

import (
	"errors"
	"strings"
	"testing"
)

func TestBindErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ task, want string }{
		"unknown":        {`{"processes": [{"name": "p", "cmdline": "echo {{nope}}"}]}`, "unknown binding {{nope}}"},
		"unknown port":   {`{"processes": [{"name": "p", "cmdline": "echo {{thermos.ports.http}}"}]}`, "unknown binding {{thermos.ports.http}}"},
		"struct":         {`{"processes": [{"name": "p", "cmdline": "echo {{task.resources}}"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}`, "not to a value"},
		"self":           {`{"name": "{{name}}", "processes": [{"name": "p", "cmdline": "echo {{task.name}}"}]}`, "refers to itself"},
		"malformed":      {`{"processes": [{"name": "p", "cmdline": "echo {{a..b}}"}]}`, "badly formed"},
		"escaped":        {`{"processes": [{"name": "p", "cmdline": "echo {{&role}}"}]}`, "escaped"},
		"nested unknown": {`{"processes": [{"name": "p", "cmdline": "echo {{task.name}}"}], "name": "x{{thermos.nope}}"}`, "{{thermos.nope}}"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := bindTask(job(t, c.task), &bindings{ports: newPortAllocator()})
			if !errors.Is(err, ErrBinding) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want ErrBinding saying %q", err, c.want)
			}
		})
	}
}

func TestBindScoping(t *testing.T) {
	t.Parallel()
	// {{name}} is the innermost struct's name; a referenced string is
	// interpolated in its own scope; defaults apply.
	j := job(t, `{"name": "tname", "processes": [
		{"name": "first", "cmdline": "{{name}}/{{task.name}}/{{processes[1].name}}/{{mesos.role}}@{{mesos.cluster}}/{{task.max_failures}}/{{processes[0].daemon}}"},
		{"name": "second-{{mesos.instance}}", "cmdline": "{{name}} {{task.finalization_wait}}"}],
		"constraints": [{"order": ["first", "second-{{mesos.instance}}"]}]}`)
	ports := newPortAllocator()
	defer ports.close()
	task, err := bindTask(j, &bindings{instance: 3, ports: ports})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, p := range task.Processes {
		got[*p.Name] = *p.Cmdline
	}
	if want := "first/tname/second-3/www-data@devcluster/1/False"; got["first"] != want {
		t.Errorf("first: %q, want %q", got["first"], want)
	}
	if want := "second-3 30"; got["second-3"] != want {
		t.Errorf("second: %q, want %q", got["second-3"], want)
	}
	if order := task.Constraints[0].Order; len(order) != 2 || order[1] != "second-3" {
		t.Errorf("order %q: want process names bound as the processes' are", order)
	}
}

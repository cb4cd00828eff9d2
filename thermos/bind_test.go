package thermos

import (
	"errors"
	"strings"
	"testing"
)

func TestBindErrors(t *testing.T) {
	t.Parallel()
	cases := map[string]struct{ task, want string }{
		"unknown":        {`{"processes": [{"name": "p", "cmdline": "echo {{nope}}"}]}`, "unbound references {{nope}}"},
		"unknown port":   {`{"processes": [{"name": "p", "cmdline": "echo {{thermos.ports.http}}"}]}`, "unbound references {{thermos.ports.http}}"},
		"struct":         {`{"processes": [{"name": "p", "cmdline": "echo {{task.resources}}"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}`, "{{task.resources}} refers to a Resources, not to a value"},
		"self":           {`{"name": "{{name}}", "processes": [{"name": "p", "cmdline": "echo {{task.name}}"}]}`, "Unable to interpolate {{name}}!  Maximum replacements reached."},
		"malformed":      {`{"processes": [{"name": "p", "cmdline": "echo {{a..b}}"}]}`, "Badly formed address .a..b"},
		"nested unknown": {`{"processes": [{"name": "p", "cmdline": "echo {{task.name}}"}], "name": "x{{thermos.nope}}"}`, "{{thermos.nope}}"},
		"nested port":    {`{"processes": [{"name": "p", "cmdline": "echo {{a[{{thermos.ports[http]}}]}}"}]}`, "unbound references {{a["},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ports := newPortAllocator()
			defer ports.close()
			_, err := bindTask(job(t, c.task), &bindings{ports: ports})
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

// Cases where validation and binding used to disagree: what Aurora accepts
// binds, with Aurora's values.
func TestBindAsAuroraDoes(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct{ task, want string }{
		"defaulted attribute as a name": {`{"processes": [{"name": "{{daemon}}", "cmdline": "echo {{name}}"}]}`, "False"},
		"escaped reference":             {`{"processes": [{"name": "p", "cmdline": "echo {{&mesos.role}}"}]}`, "echo www-data"},
		"port with dot and slash":       {`{"processes": [{"name": "p", "cmdline": "{{thermos.ports[a.b/c]}}={{thermos.ports[a.b/c]}}"}]}`, "same"},
		"float as Python 2.7 prints it": {`{"processes": [{"name": "p", "cmdline": "{{task.resources.cpu}}"}], "resources": {"cpu": 0.30000000000000004, "ram": 1048576, "disk": 1048576}}`, "0.3"},
		"task id and hostname":          {`{"processes": [{"name": "p", "cmdline": "{{thermos.task_id}}@{{mesos.hostname}}"}]}`, "tid@host"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ports := newPortAllocator()
			defer ports.close()
			task, err := bindTask(job(t, c.task), &bindings{taskID: "tid", hostname: "host", ports: ports})
			if err != nil {
				t.Fatal(err)
			}
			got := *task.Processes[0].Cmdline
			if c.want == "same" {
				a, b, _ := strings.Cut(got, "=")
				if a == "" || a != b || strings.Contains(a, "{") {
					t.Errorf("cmdline %q: want one port twice", got)
				}
				return
			}
			if name == "defaulted attribute as a name" {
				got = *task.Processes[0].Name
				if *task.Processes[0].Cmdline != "echo False" {
					t.Errorf("cmdline %q, want echo False", *task.Processes[0].Cmdline)
				}
			}
			if got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

package aurora

import (
	"encoding/json"
	"testing"
)

// cmdline returns baseJob with the process's cmdline set (and more patched).
func cmdlineJob(t *testing.T, cmdline, more string) Job {
	t.Helper()
	c, _ := json.Marshal(cmdline)
	j := parseJob(t, patched(t, `{"task": {"processes": [{"name": "hello", "cmdline": `+string(c)+`}]}}`))
	if more != "" {
		data, _ := json.Marshal(j)
		var base, patch any
		_ = json.Unmarshal(data, &base)
		if err := json.Unmarshal([]byte(more), &patch); err != nil {
			t.Fatal(err)
		}
		data, _ = json.Marshal(mergePatch(base, patch))
		j = parseJob(t, data)
	}
	return j
}

func TestMustacheAccepts(t *testing.T) {
	for _, c := range []string{
		"{{thermos.ports[http]}}",
		"--port={{thermos.ports[my-port.v2/x]}}",
		"{{thermos.task_id}} {{thermos.user}} {{mesos.instance}} {{mesos.hostname}}",
		"{{mesos.role}} {{mesos.cluster}}",
		"{{role}} {{cluster}} {{environment}} {{name}} {{task.name}} {{instances}}",
		"{{max_failures}} {{daemon}} {{min_duration}}",
		"{{task.resources.cpu}} {{resources.ram}} {{task.max_concurrency}}",
		"{{processes[0].name}} {{task.processes[-1].name}}",
		"{{service}} {{update_config.watch_secs}} {{health_check_config.health_checker.http.endpoint}}",
		"{{lifecycle.http.port}} {{lifecycle.http.graceful_shutdown_wait_secs}}",
		"{{&thermos.ports[http]}}",
		"echo '{{' and '}' and {{}} are not references",
		"{{{thermos.ports[http]}}}",
		"awk '{print $1}'",
	} {
		t.Run(c, func(t *testing.T) {
			j := cmdlineJob(t, c, "")
			if err := j.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestMustacheRejects(t *testing.T) {
	const cmd = "task.processes[0].cmdline"
	for _, tc := range []struct {
		cmdline, more string
		want          []Problem
	}{
		{"{{foo}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{foo}}. Make sure you are not nesting template variables.")}},
		{"{{foo}} {{bar.baz}} {{foo}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{foo}} {{bar.baz}}. Make sure you are not nesting template variables.")}},
		{"{{thermos.ports}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{thermos.ports}}. Make sure you are not nesting template variables.")}},
		{"{{thermos.task_id.x}} {{mesos.instance[0]}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{thermos.task_id.x}} {{mesos.instance[0]}}. Make sure you are not nesting template variables.")}},
		{"{{thermos.ports.http}}", "", []Problem{p(cmd, `Bad port specification "thermos.ports.http" (should be of form "thermos.ports[name]"`)}},
		{"{{thermos.ports[http].x}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{thermos.ports[http].x}}. Make sure you are not nesting template variables.")}},
		{"echo {{hello[{{thermos.ports[http]}}]}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{hello[30000]}}. Make sure you are not nesting template variables.")}},
		{"{{&foo}}", "", []Problem{p(cmd, "Unexpected unbound refs: {{foo}}. Make sure you are not nesting template variables.")}},
		{"{{ foo }}", "", []Problem{p(cmd, "Invalid address: {{ foo }}")}},
		{"{{foo bar}}", "", []Problem{p(cmd, "Badly formed address .foo bar")}},
		{"{{a[b}}", "", []Problem{p(cmd, "Badly formed address .a[b")}},
		{"{{cmdline}}", "", []Problem{p(cmd, "Unable to interpolate {{cmdline}}!  Maximum replacements reached.")}},
		{"{{task}}", "", []Problem{p(cmd, "{{task}} refers to a Task, not to a value")}},
		{"{{processes}}", "", []Problem{p(cmd, "{{processes}} refers to a list, not to a value")}},
		{"{{metadata}}", "", []Problem{p(cmd, "{{metadata}} refers to a list, not to a value")}},
		// {{constraints}} is the task's list before the job's map, as in pystachio.
		{"{{constraints}}", `{"constraints": {"host": "limit:1"}}`, []Problem{p(cmd, "{{constraints}} refers to a list, not to a value")}},
		{"{{announce.portmap}}", `{"announce": {}}`, []Problem{p(cmd, "{{announce.portmap}} refers to a map, not to a value")}},
		{"true", `{"role": "{{thermos.user}}x"}`, []Problem{p("role", "Unable to interpolate {{role}}!  Maximum replacements reached.")}},
		// Other strings of the job are interpolated too.
		{"true", `{"metadata": [{"key": "k", "value": "{{nope}}"}]}`, []Problem{p("metadata[0].value", "Config contains unbound variables: {{nope}}")}},
		{"true", `{"constraints": {"{{x}}": "y"}}`, []Problem{p(`constraints["{{x}}"]`, "Config contains unbound variables: {{x}}")}},
		{"true", `{"announce": {"portmap": {"aurora": "{{secondary_port}}"}}}`,
			[]Problem{p("announce.portmap[aurora]", "Config contains unbound variables: {{secondary_port}}")}},
		// Each round doubles the string: stopped, not left to exhaust memory.
		{"true", `{"contact": "{{role}}", "role": "{{&cluster}}{{&cluster}}", "cluster": "{{&role}}{{&role}}"}`, []Problem{
			p("contact", "Unable to interpolate {{role}}!  Maximum replacements reached."),
			p("cluster", "Unable to interpolate {{role}}!  Maximum replacements reached."),
			p("role", "Invalid role ''"),
		}},
		{"true", `{"metadata": [{"key": "{{value}}", "value": "{{key}}"}]}`,
			[]Problem{p("metadata[0].value", "Unable to interpolate {{key}}!  Maximum replacements reached.")}},
	} {
		t.Run(tc.cmdline+tc.more, func(t *testing.T) {
			err := cmdlineJob(t, tc.cmdline, tc.more).Validate()
			if err == nil {
				t.Fatal("Validate accepted it")
			}
			wantProblems(t, problemsOf(t, err, ErrClient), tc.want...)
		})
	}
}

func TestInterpolation(t *testing.T) {
	j := cmdlineJob(t, "x", `{"name": "{{role}}-{{task.name}}", "role": "alice", "task": {"name": "t{{instances}}"},
		"instances": 2, "cluster": "{{mesos.cluster}}c1"}`)
	a := analyze(&j, "")
	for _, tc := range []struct{ in, want string }{
		{"{{name}}", "alice-t2"},
		{"{{role}} {{thermos.user}} {{mesos.role}}", "alice alice alice"},
		{"{{cluster}}/{{environment}}", "c1/devel"}, // the cycle is reported, and cut
		{"{{task.resources.cpu}} {{task.resources.ram}} {{service}}", "1.0 1048576 False"},
		{"{{task.processes[0].name}} {{task.processes[-1].name}} {{task.processes[1].name}}", "hello hello {{task.processes[1].name}}"},
		{"{{&role}}", "alice"}, // interpolated twice, as by AuroraConfig.job and convert
		{"{{mesos.instance}}", "{{mesos.instance}}"},
	} {
		if res := a.client.Interpolate(tc.in, a.root); res.Out != tc.want {
			t.Errorf("interpolate(%q) = %q, want %q", tc.in, res.Out, tc.want)
		}
	}
	if got := j.Key(); got != "c1/alice/devel/alice-t2" {
		t.Errorf("Key() = %q", got)
	}
	if got := j.JobName(); got != "alice-t2" {
		t.Errorf("JobName() = %q", got)
	}
	wantProblems(t, problemsOf(t, j.Validate(), ErrClient),
		p("cluster", "Unable to interpolate {{cluster}}!  Maximum replacements reached."))
}

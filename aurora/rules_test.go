package aurora

import (
	"testing"
)

// What Aurora 0.22's client accepts (checked against its code and
// pystachio 0.8.5's) and an earlier nix-aurora refused.
func TestAuroraAccepts(t *testing.T) {
	for _, tc := range []struct{ name, patch string }{
		{"bindings the client makes", `{"task": {"processes": [{"name": "hello", "cmdline": "{{mesos.role}} {{mesos.cluster}} {{thermos.user}} {{processes[0].name}} {{task.resources.cpu}}"}]}}`},
		{"the announcer's defaults", `{"announce": {}, "task": {"processes": [{"name": "hello", "cmdline": "{{announce.primary_port}} {{announce.portmap[aurora]}}"}]}}`},
		{"a defaulted struct", `{"task": {"processes": [{"name": "hello", "cmdline": "{{executor_config.name}} {{executor_config.data}}"}]}}`},
		{"an escaped reference, interpolated twice", `{"task": {"processes": [{"name": "hello", "cmdline": "{{&role}} {{&thermos.ports[http]}}"}]}}`},
		{"port names with dots and slashes", `{"task": {"processes": [{"name": "hello", "cmdline": "{{thermos.ports[a.b]}} {{thermos.ports[x/y-z]}}"}]}}`},
		{"node bindings outside the task", `{"contact": "{{thermos.ports[http]}}@{{mesos.instance}}", "metadata": [{"key": "k", "value": "{{mesos.hostname}}"}]}`},
		{"a process name bound by the node", `{"name": "web", "task": {"name": "web", "processes": [{"name": "p-{{mesos.instance}}", "cmdline": "true"}, {"name": "q{{thermos.ports[http]}}", "cmdline": "true"}]}}`},
		{"numbers as strings, strings as numbers", `{"instances": "3", "priority": 2.7, "max_task_failures": true, "service": "true", "production": 0,
			"task": {"resources": {"cpu": "0.5", "ram": "1048576", "disk": 1048576.9}, "max_failures": " 2 "}}`},
		{"numbers for strings", `{"role": 5, "task": {"name": "t", "processes": [{"name": 1, "cmdline": 2.5}, {"name": "b", "cmdline": true}], "constraints": [{"order": [1, "b"]}]}}`},
		{"a binding in a numeric field", `{"instances": 4, "priority": "{{instances}}", "update_config": {"batch_size": "{{instances}}"}}`},
		{"Unicode digits where Python's int() reads them", `{"constraints": {"dedicated": "alice/x", "host": "limit:٣"}, "announce": {"portmap": {"http": "٨٠", "aurora": "http"}}}`},
		{"a limit at the top of i32", `{"constraints": {"host": "limit:2147483647"}, "instances": 2147483647, "priority": -2147483648}`},
		{"an empty process list, the names given", `{"name": "web", "task": {"name": "web", "processes": []}}`},
		{"duplicate process names", `{"task": {"processes": [{"name": "hello", "cmdline": "a"}, {"name": "hello", "cmdline": "b"}]}}`},
		{"an order naming only unknown processes", `{"task": {"constraints": [{"order": ["x", "y"]}]}}`},
		{"a coordinator SLA policy", `{"sla_policy": {"coordinator_url": "http://coordinator"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantAccepted(t, tc.patch)
		})
	}
}

// What Aurora 0.22's client rejects and an earlier nix-aurora accepted,
// with Aurora's words where it has them.
func TestAuroraRejects(t *testing.T) {
	const unexpected = ". Make sure you are not nesting template variables."
	for _, tc := range []struct {
		name, patch string
		want        []Problem
	}{
		{"a portmap cycle through the default portmap", `{"announce": {"primary_port": "aurora"}}`,
			[]Problem{p("announce.portmap", "Found cycle in portmap!")}},
		{"a portmap cycle", `{"announce": {"portmap": {"a": "b", "b": "a", "aurora": "http"}}}`,
			[]Problem{p("announce.portmap", "Found cycle in portmap!")}},
		{"a static port after interpolation", `{"instances": 3, "announce": {"portmap": {"http": "{{instances}}", "aurora": "http"}}}`,
			[]Problem{p("announce.portmap[http]", "Job must be dedicated in order to specify static ports!")}},
		{"a static port in Unicode digits", `{"announce": {"portmap": {"http": "٨٠", "aurora": "http"}}}`,
			[]Problem{p("announce.portmap[http]", "Job must be dedicated in order to specify static ports!")}},
		{"a job name the node would bind", `{"name": "web-{{mesos.instance}}"}`,
			[]Problem{p("name", "Invalid name 'web-{{mesos.instance}}'")}},
		{"a job name defaulted from a process name with a port", `{"task": {"processes": [{"name": "p{{thermos.ports[http]}}", "cmdline": "true"}]}}`,
			[]Problem{p("name", "Invalid name 'p{{thermos.ports[http]}}'")}},
		{"a process name of the hostname, bound to '' when checked", `{"name": "web", "task": {"name": "web", "processes": [{"name": "{{mesos.hostname}}", "cmdline": "true"}]}}`,
			[]Problem{p("task.processes[0].name", "Invalid process name: ")}},
		{"non-ASCII identifiers (Python 2.7's \\w)", `{"name": "wëb", "role": "日本", "environment": "staging٣"}`, []Problem{
			p("name", "Invalid name 'wëb'"),
			p("role", "Invalid role '日本'"),
			p("environment", "Invalid environment 'staging٣'"),
		}},
		{"i32 fields from 2^31", `{"instances": 2147483648, "priority": -2147483649, "max_task_failures": "4294967296", "constraints": {"host": "limit:2147483648"}}`, []Problem{
			p("instances", "2147483648 does not fit the 32-bit integer of Aurora's API (JobConfiguration.instanceCount): the client fails to encode it"),
			p("priority", "-2147483649 does not fit the 32-bit integer of Aurora's API (TaskConfig.priority): the client fails to encode it"),
			p("max_task_failures", "4294967296 does not fit the 32-bit integer of Aurora's API (TaskConfig.maxTaskFailures): the client fails to encode it"),
			p("constraints[host]", "2147483648 does not fit the 32-bit integer of Aurora's API (LimitConstraint.limit): the client fails to encode it"),
		}},
		{"a numeric field the client cannot bind", `{"priority": "{{mesos.instance}}"}`,
			[]Problem{p("priority", "u'{{mesos.instance}}' not an integer")}},
		{"a numeric field that does not coerce after interpolation", `{"priority": "{{role}}"}`,
			[]Problem{p("priority", "Unable to interpolate: Cannot coerce 'alice' to Integer")}},
		{"an unknown reference in the task", `{"task": {"processes": [{"name": "hello", "cmdline": "{{foo}}"}]}}`,
			[]Problem{p("task.processes[0].cmdline", "Unexpected unbound refs: {{foo}}"+unexpected)}},
		{"an unknown reference outside the task", `{"contact": "{{foo}}"}`,
			[]Problem{p("contact", "Config contains unbound variables: {{foo}}")}},
		{"an escaped unknown reference outside the task", `{"contact": "{{&foo}}"}`,
			[]Problem{p("contact", "Config contains unbound variables: {{foo}}")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRejected(t, tc.patch, tc.want...)
		})
	}
}

// Aurora's non-rules are warnings, never rejections.
func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []Problem
	}{
		{"duplicate process names", `{"task": {"processes": [{"name": "hello", "cmdline": "a"}, {"name": "hello", "cmdline": "b"}]}}`,
			[]Problem{p("task.processes[1].name", "duplicate process name hello (also task.processes[0]): Thermos runs only the last of them")}},
		{"no processes", `{"name": "web", "task": {"name": "web", "processes": []}}`,
			[]Problem{p("task.processes", "the task has no processes: Aurora accepts it, and the task does nothing")}},
		{"an order naming no process", `{"task": {"constraints": [{"order": ["x", "y"]}]}}`,
			[]Problem{p("task.constraints[0].order", "the order names no process of the task: Thermos ignores it")}},
		{"coerced values", `{"instances": "3", "priority": 2.7, "role": 5}`, []Problem{
			p("instances", `string "3" coerced to Integer 3, as Aurora's client does`),
			p("priority", `number 2.7 coerced to Integer 2, as Aurora's client does`),
			p("role", `number 5 coerced to String "5", as Aurora's client does`),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ValidateDocument(patched(t, tc.doc))
			if err != nil {
				t.Fatal(err)
			}
			wantProblems(t, d.Warnings(), tc.want...)
		})
	}
	d, err := ValidateDocument([]byte(`{"jobs": [` + baseJob + `], "hooks": []}`))
	if err != nil || len(d.Jobs) != 1 || len(d.Warnings()) != 0 {
		t.Errorf("a jobs list beside other keys: %v, %d warnings", err, len(d.Warnings()))
	}
}

// Coerced and templated values are what Aurora computes; the job encodes
// as the author wrote it only in the file itself (Parse does not rewrite
// it), so the values are checked here.
func TestCoercedValues(t *testing.T) {
	j := parseJob(t, patched(t, `{"instances": "3", "priority": "{{instances}}", "max_task_failures": 2.7, "service": "TRUE",
		"task": {"resources": {"cpu": "0.5", "ram": "١٠٤٨٥٧٦", "disk": 1048576}}}`))
	if *j.Instances != 3 || *j.Priority != 3 || *j.MaxTaskFailures != 2 || !j.IsService() ||
		*j.Task.Resources.CPU != 0.5 || *j.Task.Resources.RAM != 1048576 {
		t.Errorf("instances %d priority %v max_task_failures %d service %v cpu %v ram %d", *j.Instances, j.Priority,
			*j.MaxTaskFailures, j.IsService(), *j.Task.Resources.CPU, *j.Task.Resources.RAM)
	}
	if j.Templates["priority"] != "{{instances}}" {
		t.Errorf("Templates = %v", j.Templates)
	}
}

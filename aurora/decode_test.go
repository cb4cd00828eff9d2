package aurora

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

func TestParseService(t *testing.T) {
	d, err := ParseDocument(readFile(t, "testdata/service.json"))
	if err != nil {
		t.Fatal(err)
	}
	if d.List || len(d.Jobs) != 1 {
		t.Fatalf("want one job, not a list: %+v", d)
	}
	j := d.Jobs[0]
	if got := *j.Task.Processes[1].Logger.Rotate.LogSize; got != 10485760 {
		t.Errorf("log_size = %d", got)
	}
	if got := *j.HealthCheckConfig.HealthChecker.HTTP.ExpectedResponseCode; got != 200 {
		t.Errorf("expected_response_code = %d", got)
	}
	if got := *j.HealthCheckConfig.IntervalSecs; got != 10.5 {
		t.Errorf("interval_secs = %v", got)
	}
	if got := *j.Task.Resources.CPU; got != 0.5 {
		t.Errorf("cpu = %v", got)
	}
	if got := j.Constraints["rack"]; got != "!r1,r2" {
		t.Errorf("constraints[rack] = %q", got)
	}
	if got := *j.UpdateConfig.UpdateStrategy.BatchSize; got != 2 {
		t.Errorf("update_strategy.batch_size = %d", got)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := d.ValidateScheduler(); err != nil {
		t.Errorf("ValidateScheduler: %v", err)
	}
}

func TestParseJobsList(t *testing.T) {
	d, err := ParseDocument(readFile(t, "testdata/jobs.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !d.List || len(d.Jobs) != 2 {
		t.Fatalf("want a list of 2 jobs: %+v", d)
	}
	if got := d.Jobs[1].Container.Docker.Parameters[0]; *got.Name != "env" || *got.Value != "A=1" {
		t.Errorf("docker parameter = %+v", got)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	// A list's problems are rooted at jobs[i].
	d.Jobs[1].Role = nil
	wantProblems(t, problemsOf(t, d.Validate(), ErrClient),
		p("jobs[1].role", `Role required for job "batch"`))
}

// Every rejection of the strict loader, with its path.
func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []Problem
	}{
		{"invalid JSON", `{"role": }`, []Problem{p("", "invalid JSON: invalid character '}' looking for beginning of value")}},
		{"extra data", `{} {}`, []Problem{p("", "invalid JSON: extra data after the document")}},
		{"top-level null", `null`, []Problem{p("", `expected an object (a job, or {"jobs": [...]}), got null`)}},
		{"top-level list", `[]`, []Problem{p("", `expected an object (a job, or {"jobs": [...]}), got a list`)}},
		{"jobs null", `{"jobs": null}`, []Problem{p("jobs", nullMessage)}},
		{"jobs not a list", `{"jobs": {}}`, []Problem{p("jobs", "expected a list of jobs, got an object")}},
		{"jobs empty", `{"jobs": []}`, []Problem{p("jobs", "No job defined in this config!")}},
		{"sla policies other than the coordinator's", `{"jobs": [{"sla_policy": {"count": 2, "duration_secs": 60}}, {"sla_policy": {"percentage": 50}}]}`, []Problem{
			p("jobs[0].sla_policy", "Unknown schema attribute count"),
			p("jobs[0].sla_policy", "Unknown schema attribute duration_secs"),
			p("jobs[1].sla_policy", "Unknown schema attribute percentage"),
		}},
		{"invalid UTF-8", "{\"role\": \"al\xffice\"}", []Problem{p("", "invalid JSON: 'utf8' codec can't decode byte 0xff in position 12")}},
		{"job null in list", `{"jobs": [null]}`, []Problem{p("jobs[0]", nullMessage)}},
		{"unknown key at job level", `{"role": "r", "rol": "r"}`, []Problem{p("", "Unknown schema attribute rol")}},
		{"restart_threshold in update_config", `{"update_config": {"restart_threshold": 60, "watch_secs": 45}}`,
			[]Problem{p("update_config", "Unknown schema attribute restart_threshold")}},
		{"port_map in announce", `{"announce": {"port_map": {"aurora": "http"}}}`,
			[]Problem{p("announce", "Unknown schema attribute port_map")}},
		{"endpoint at health_check_config's top level", `{"health_check_config": {"endpoint": "/health", "interval_secs": 5}}`,
			[]Problem{p("health_check_config", "Unknown schema attribute endpoint")}},
		{"type at health_check_config's top level", `{"health_check_config": {"type": "shell"}}`,
			[]Problem{p("health_check_config", "Unknown schema attribute type")}},
		{"unknown key in a process of a list", `{"jobs": [{}, {"task": {"processes": [{"name": "a"}, {"name": "b", "comand": "x"}]}}]}`,
			[]Problem{p("jobs[1].task.processes[1]", "Unknown schema attribute comand")}},
		{"mesos container", `{"container": {"mesos": {"image": {"name": "x", "tag": "y"}}}}`,
			[]Problem{p("container", "Unknown schema attribute mesos")}},
		{"docker directly as container", `{"container": {"image": "debian"}}`,
			[]Problem{p("container", "Unknown schema attribute image")}},
		{"batch update strategy", `{"update_config": {"update_strategy": {"batch_size": 2, "autopause_after_batch": true}}}`,
			[]Problem{p("update_config.update_strategy", "Unknown schema attribute autopause_after_batch")}},
		{"several unknown keys everywhere", `{"a": 1, "task": {"b": 2, "resources": {"mem": 3}}}`, []Problem{
			p("", "Unknown schema attribute a"),
			p("task", "Unknown schema attribute b"),
			p("task.resources", "Unknown schema attribute mem"),
		}},
		{"null at job level", `{"contact": null}`, []Problem{p("contact", nullMessage)}},
		{"null struct", `{"announce": null}`, []Problem{p("announce", nullMessage)}},
		{"null in task", `{"task": {"resources": null}}`, []Problem{p("task.resources", nullMessage)}},
		{"null process", `{"task": {"processes": [null]}}`, []Problem{p("task.processes[0]", nullMessage)}},
		{"null deep in a process", `{"task": {"processes": [{"name": "a", "logger": {"rotate": {"backups": null}}}]}}`,
			[]Problem{p("task.processes[0].logger.rotate.backups", nullMessage)}},
		{"null in an order list", `{"task": {"constraints": [{"order": ["a", null]}]}}`,
			[]Problem{p("task.constraints[0].order[1]", nullMessage)}},
		{"null map value", `{"constraints": {"host": null}}`, []Problem{p("constraints[host]", nullMessage)}},
		{"null map value, quoted key", `{"announce": {"portmap": {"a b": null}}}`, []Problem{p(`announce.portmap["a b"]`, nullMessage)}},
		{"null in a list doc", `{"jobs": [{"update_config": {"watch_secs": null}}]}`,
			[]Problem{p("jobs[0].update_config.watch_secs", nullMessage)}},
		{"fraction in a string for integer", `{"instances": "2.7"}`, []Problem{p("instances", `expected an integer, got string "2.7": Cannot coerce '2.7' to Integer`)}},
		{"word for boolean", `{"service": "yes"}`, []Problem{p("service", `expected a boolean (true or false), got string "yes": Cannot coerce 'yes' to Boolean`)}},
		{"hexadecimal for float", `{"task": {"resources": {"cpu": "0x1p-2"}}}`, []Problem{p("task.resources.cpu", `expected a number, got string "0x1p-2": Cannot coerce '0x1p-2' to Float`)}},
		{"object for string", `{"role": {}}`, []Problem{p("role", "expected a string, got an object")}},
		{"huge float for integer", `{"priority": 1e30}`, []Problem{p("priority", "expected an integer, got 1e30 (out of range for a 64-bit integer)")}},
		{"one below the smallest int64", `{"priority": -9223372036854775809}`,
			[]Problem{p("priority", "expected an integer, got -9223372036854775809 (out of range for a 64-bit integer)")}},
		{"one above the largest int64", `{"task": {"resources": {"ram": 9223372036854775808}}}`,
			[]Problem{p("task.resources.ram", "expected an integer, got 9223372036854775808 (out of range for a 64-bit integer)")}},
		{"one below the smallest int64, as a fraction", `{"jobs": [{"instances": -9223372036854777856.0}]}`,
			[]Problem{p("jobs[0].instances", "expected an integer, got -9223372036854777856.0 (out of range for a 64-bit integer)")}},
		{"object for list", `{"task": {"processes": {}}}`, []Problem{p("task.processes", "expected a list, got an object")}},
		{"list for struct", `{"task": []}`, []Problem{p("task", "expected an object (Task), got a list")}},
		{"string for map", `{"constraints": "host"}`, []Problem{p("constraints", `expected an object mapping strings to strings, got string "host"`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			wantProblems(t, problemsOf(t, err, ErrSchema), tc.want...)
		})
	}
}

func TestParseAccepts(t *testing.T) {
	for _, tc := range []struct {
		name  string
		doc   string
		check func(t *testing.T, j Job)
	}{
		{"integer written as a float", `{"instances": 2.0, "priority": 1e2}`, func(t *testing.T, j Job) {
			if *j.Instances != 2 || *j.Priority != 100 {
				t.Errorf("instances %d priority %d", *j.Instances, *j.Priority)
			}
		}},
		{"integer for a float", `{"task": {"resources": {"cpu": 2}}}`, func(t *testing.T, j Job) {
			if *j.Task.Resources.CPU != 2 {
				t.Errorf("cpu %v", *j.Task.Resources.CPU)
			}
		}},
		{"arbitrary map keys", `{"constraints": {"any key: at all": "v", "": "w"}, "task_links": {"x/y": "z"}}`, func(t *testing.T, j Job) {
			if j.Constraints["any key: at all"] != "v" || j.Constraints[""] != "w" || j.TaskLinks["x/y"] != "z" {
				t.Errorf("constraints %v task_links %v", j.Constraints, j.TaskLinks)
			}
		}},
		{"empty is kept apart from absent", `{"metadata": [], "announce": {"portmap": {}}, "lifecycle": {}}`, func(t *testing.T, j Job) {
			if j.Metadata == nil || len(j.Metadata) != 0 || j.Announce.Portmap == nil || j.Lifecycle == nil || j.Lifecycle.HTTP != nil {
				t.Errorf("%+v", j)
			}
			if j.Contact != nil || j.Tier != nil || j.TaskLinks != nil {
				t.Error("absent attributes were filled in")
			}
		}},
		{"every optional struct", `{"executor_config": {"name": "AuroraExecutor", "data": ""}, "sla_policy": {"coordinator_url": "http://c"},
			"partition_policy": {"reschedule": false}, "enable_hooks": true, "production": false, "tier": "preemptible",
			"health_check_config": {"health_checker": {"shell": {"shell_command": "true"}}},
			"task": {"user": "alice", "max_concurrency": 2, "processes": [{"name": "hello", "cmdline": "echo hello",
				"resources": {"cpu": 1, "ram": 1, "disk": 1}, "ephemeral": true, "logger": {"destination": "console", "mode": "standard"}}]}}`,
			func(t *testing.T, j Job) {
				if *j.SlaPolicy.CoordinatorURL != "http://c" || *j.HealthCheckConfig.HealthChecker.Shell.ShellCommand != "true" || !j.Task.Processes[0].IsEphemeral() {
					t.Errorf("%+v", j)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, parseJob(t, patched(t, tc.doc)))
		})
	}
}

// A parsed job encodes to JSON without nulls and without what was absent,
// and that JSON parses back to the same job.
func TestRoundTrip(t *testing.T) {
	for _, name := range []string{"testdata/service.json", "testdata/jobs.json", "testdata/minimal.json", "testdata/empties.json"} {
		t.Run(name, func(t *testing.T) {
			data := readFile(t, name)
			d, err := ParseDocument(data)
			if err != nil {
				t.Fatal(err)
			}
			out, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			var before, after any
			if err := json.Unmarshal(data, &before); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(out, &after); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(before, after) {
				t.Errorf("re-encoding changed the document:\n%s\n%s", data, out)
			}
			d2, err := ParseDocument(out)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(d, d2) {
				t.Errorf("re-parsing changed the document")
			}
		})
	}
}

// Every schema struct decodes every attribute it declares, and declares the
// attributes Aurora's schema has (a guard against a typo in a tag).
func TestSchemaAttributes(t *testing.T) {
	want := map[reflect.Type][]string{
		reflect.TypeFor[Job](): {"name", "role", "contact", "cluster", "environment", "instances", "task", "announce", "tier",
			"cron_schedule", "cron_collision_policy", "update_config", "constraints", "metadata", "service", "max_task_failures",
			"production", "priority", "health_check_config", "lifecycle", "task_links", "executor_config", "enable_hooks",
			"partition_policy", "sla_policy", "container"},
		reflect.TypeFor[Task](): {"name", "processes", "constraints", "resources", "max_failures", "max_concurrency",
			"finalization_wait", "user"},
		reflect.TypeFor[Process](): {"cmdline", "name", "resources", "max_failures", "daemon", "ephemeral", "min_duration",
			"final", "logger"},
		reflect.TypeFor[Resources]():    {"cpu", "ram", "disk", "gpu"},
		reflect.TypeFor[Logger]():       {"destination", "mode", "rotate"},
		reflect.TypeFor[RotatePolicy](): {"log_size", "backups"},
		reflect.TypeFor[UpdateConfig](): {"batch_size", "watch_secs", "max_per_shard_failures", "max_total_failures",
			"rollback_on_failure", "wait_for_batch_completion", "pulse_interval_secs", "sla_aware", "update_strategy"},
		reflect.TypeFor[HealthCheckConfig](): {"health_checker", "initial_interval_secs", "interval_secs",
			"max_consecutive_failures", "min_consecutive_successes", "timeout_secs"},
		reflect.TypeFor[HTTPHealthChecker]():   {"endpoint", "expected_response", "expected_response_code"},
		reflect.TypeFor[HTTPLifecycleConfig](): {"port", "graceful_shutdown_endpoint", "shutdown_endpoint", "graceful_shutdown_wait_secs", "shutdown_wait_secs"},
		reflect.TypeFor[Announcer]():           {"primary_port", "portmap", "zk_path"},
	}
	for typ, attrs := range want {
		var got []string
		for _, f := range fieldsOf(typ) {
			got = append(got, f.name)
		}
		if !reflect.DeepEqual(got, attrs) {
			t.Errorf("%s attributes:\n got %v\nwant %v", typ.Name(), got, attrs)
		}
	}
}

// Integers are exact over the whole int64 range, in every JSON spelling,
// and never pass through float64.
func TestParseIntegerExact(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "-9223372036854775808", want: math.MinInt64},
		{in: "9223372036854775807", want: math.MaxInt64},
		{in: "-9223372036854775808.000", want: math.MinInt64},
		{in: "9223372036854775807e0", want: math.MaxInt64},
		{in: "92233720368547758.07e2", want: math.MaxInt64},
		{in: "922337203685477580700e-2", want: math.MaxInt64},
		{in: "9007199254740993.0", want: 1<<53 + 1},
		{in: "9007199254740993e0", want: 1<<53 + 1},
		{in: "-0.0", want: 0},
		{in: "0e999999999999999999999", want: 0},
		{in: "1.5e1", want: 15},
		{in: "-9223372036854775809", err: "-9223372036854775809 (out of range for a 64-bit integer)"},
		{in: "9223372036854775808", err: "9223372036854775808 (out of range for a 64-bit integer)"},
		{in: "9223372036854775808.0", err: "9223372036854775808.0 (out of range for a 64-bit integer)"},
		{in: "1e19", err: "1e19 (out of range for a 64-bit integer)"},
		{in: "1e999999999999999999999", err: "1e999999999999999999999 (out of range for a 64-bit integer)"},
		{in: "-1e9223372036854775807", err: "-1e9223372036854775807 (out of range for a 64-bit integer)"},
		{in: "1e-999999999999999999999", err: "1e-999999999999999999999 (not a whole number)"},
		{in: "1e-400", err: "1e-400 (not a whole number)"},
		{in: "9007199254740993.5", err: "9007199254740993.5 (not a whole number)"},
		{in: "1.25e1", err: "1.25e1 (not a whole number)"},
	} {
		got, err := parseInteger(json.Number(tc.in))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("parseInteger(%s): %v", tc.in, err)
		case tc.err == "" && got != tc.want:
			t.Errorf("parseInteger(%s) = %d, want %d", tc.in, got, tc.want)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("parseInteger(%s) = %d, %v; want error %q", tc.in, got, err, tc.err)
		}
	}
}

// The largest and smallest int64 load exactly through Parse; a literal with
// a fraction is a float to Python's json, truncated by int().
func TestParseIntegerBounds(t *testing.T) {
	j := parseJob(t, []byte(`{"priority": -9223372036854775808, "instances": 9223372036854775807, "max_task_failures": 9007199254740993.0}`))
	if *j.Priority != math.MinInt64 || *j.Instances != math.MaxInt64 || *j.MaxTaskFailures != 1<<53 {
		t.Errorf("priority %d instances %d max_task_failures %d", *j.Priority, *j.Instances, *j.MaxTaskFailures)
	}
}

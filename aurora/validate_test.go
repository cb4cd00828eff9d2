package aurora

import (
	"errors"
	"strings"
	"testing"
)

// Jobs Aurora's client accepts.
func TestValidateAccepts(t *testing.T) {
	for _, tc := range []struct{ name, patch string }{
		{"minimal job", ``},
		{"service with fewer failures than instances", `{"service": true, "instances": 3, "update_config": {"max_total_failures": 2}}`},
		{"process names with spaces and inner dots", `{"task": {"processes": [{"name": "my proc.v1", "cmdline": "true"}]}, "name": "web"}`},
		{"job name from the process", `{"task": {"processes": [{"name": "from-process", "cmdline": "true"}]}}`},
		{"lower-case cron collision policy", `{"cron_collision_policy": "cancel_new"}`},
		{"static port in a dedicated job", `{"constraints": {"dedicated": "alice/web"}, "announce": {"portmap": {"http": "80", "aurora": "http"}}}`},
		{"announce with the default portmap", `{"announce": {"primary_port": "http"}}`},
		{"shell health check", `{"health_check_config": {"health_checker": {"shell": {"shell_command": "curl -f localhost:{{thermos.ports[health]}}"}}}}`},
		{"zero health-check intervals", `{"health_check_config": {"initial_interval_secs": 0, "interval_secs": 0}, "update_config": {"watch_secs": 0}}`},
		{"ram and disk of exactly 1 MiB, fractional cpu", `{"task": {"resources": {"cpu": 0.01, "ram": 1048576, "disk": 1048576}}}`},
		{"lifecycle disabled", `{"lifecycle": {}}`},
		{"docker container", `{"container": {"docker": {"image": "debian:stable"}}}`},
		{"coordinator sla policy", `{"sla_policy": {"coordinator_url": "http://coordinator", "status_key": "drain"}}`},
		{"limit constraint", `{"constraints": {"host": "limit:1", "rack": "!r1,r2"}}`},
		{"every logger destination and mode", `{"task": {"processes": [
			{"name": "a", "cmdline": "true", "logger": {"destination": "file", "mode": "standard"}},
			{"name": "b", "cmdline": "true", "logger": {"destination": "console", "mode": "rotate", "rotate": {"log_size": 1}}},
			{"name": "c", "cmdline": "true", "logger": {"destination": "both"}},
			{"name": "d", "cmdline": "true", "logger": {"destination": "none"}}]}}`},
		{"empty cmdline", `{"task": {"processes": [{"name": "hello", "cmdline": ""}]}}`},
		{"role from the cluster", `{"role": "{{cluster}}-owner"}`},
		{"metadata", `{"metadata": [{"key": "k", "value": "{{role}}@{{cluster}}"}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantAccepted(t, tc.patch)
		})
	}
}

// Every client-side rejection, with Aurora's message and the path.
func TestValidateRejects(t *testing.T) {
	for _, tc := range []struct {
		name, patch string
		want        []Problem
	}{
		// AuroraConfig.validate_job and pystachio's Required.
		{"missing cluster", `{"cluster": null}`, []Problem{p("cluster", `Cluster required for job "hello"`)}},
		{"missing role", `{"role": null}`, []Problem{p("role", `Role required for job "hello"`)}},
		{"missing task", `{"task": null}`, []Problem{p("task", `Task required for job "{{task.name}}"`)}},
		{"missing processes", `{"task": {"processes": null}}`,
			[]Problem{p("task.processes", `Processes required for task on job "{{processes[0].name}}"`)}},
		{"empty processes, names defaulted from them", `{"task": {"processes": []}}`, []Problem{
			p("name", "Invalid name '{{processes[0].name}}'"),
			p("name", "Config contains unbound variables: {{processes[0].name}}"),
			p("task.name", "Unexpected unbound refs: {{processes[0].name}}. Make sure you are not nesting template variables."),
		}},
		{"missing environment", `{"environment": null}`, []Problem{p("environment", "MesosJob[environment] is required.")}},
		{"missing cmdline", `{"task": {"processes": [{"name": "hello"}]}}`,
			[]Problem{p("task.processes[0].cmdline", "Process[cmdline] is required.")}},
		{"missing process name", `{"name": "web", "task": {"name": "web", "processes": [{"cmdline": "true"}]}}`,
			[]Problem{p("task.processes[0].name", "Process[name] is required.")}},
		{"missing cpu", `{"task": {"resources": {"cpu": null}}}`, []Problem{p("task.resources.cpu", "Resources[cpu] is required.")}},
		{"missing ram in a process's reserved resources", `{"task": {"processes": [{"name": "hello", "cmdline": "true", "resources": {"cpu": 1, "disk": 1}}]}}`,
			[]Problem{p("task.processes[0].resources.ram", "Resources[ram] is required.")}},
		{"docker without image", `{"container": {"docker": {}}}`, []Problem{p("container.docker.image", "Docker[image] is required.")}},
		{"docker parameter without value", `{"container": {"docker": {"image": "x", "parameters": [{"name": "env"}]}}}`,
			[]Problem{p("container.docker.parameters[0].value", "Parameter[value] is required.")}},
		{"metadata without value", `{"metadata": [{"key": "k"}]}`, []Problem{p("metadata[0].value", "Metadata[value] is required.")}},
		{"shell health check without command", `{"health_check_config": {"health_checker": {"shell": {}}}}`,
			[]Problem{p("health_check_config.health_checker.shell.shell_command", "ShellHealthChecker[shell_command] is required.")}},
		{"constraint without order", `{"task": {"constraints": [{}]}}`,
			[]Problem{p("task.constraints[0].order", "Constraint[order] is required.")}},

		// config/thrift.py: resources.
		{"missing resources", `{"task": {"resources": null}}`, []Problem{p("task.resources", "Task must specify resources!")}},
		{"zero ram", `{"task": {"resources": {"ram": 0}}}`,
			[]Problem{p("task.resources", "Must specify ram and disk resources, got ram:0 disk:1048576")}},
		{"zero disk", `{"task": {"resources": {"disk": 0}}}`,
			[]Problem{p("task.resources", "Must specify ram and disk resources, got ram:1048576 disk:0")}},
		{"ram under 1 MiB", `{"task": {"resources": {"ram": 1048575}}}`,
			[]Problem{p("task.resources", "Task has invalid resources.  cpu/ramMb/diskMb must all be positive: cpu:1.0 ramMb:0 diskMb:1")}},
		{"zero cpu", `{"task": {"resources": {"cpu": 0}}}`,
			[]Problem{p("task.resources", "Task has invalid resources.  cpu/ramMb/diskMb must all be positive: cpu:0.0 ramMb:1 diskMb:1")}},
		{"negative cpu and disk", `{"task": {"resources": {"cpu": -0.5, "disk": -1}}}`,
			[]Problem{p("task.resources", "Task has invalid resources.  cpu/ramMb/diskMb must all be positive: cpu:-0.5 ramMb:1 diskMb:-1")}},

		// config/thrift.py: names.
		{"invalid role", `{"role": "alice smith"}`, []Problem{p("role", "Invalid role 'alice smith'")}},
		{"role with a trailing newline", `{"role": "alice\n"}`, []Problem{p("role", "Invalid role 'alice\n'")}},
		{"invalid environment", `{"environment": "dev/el"}`, []Problem{p("environment", "Invalid environment 'dev/el'")}},
		{"invalid job name", `{"name": "a:b"}`, []Problem{p("name", "Invalid name 'a:b'")}},
		{"empty job name", `{"name": ""}`, []Problem{p("name", "Invalid name ''")}},
		{"job name from a process name with a space", `{"task": {"processes": [{"name": "my proc", "cmdline": "true"}]}}`,
			[]Problem{p("name", "Invalid name 'my proc'")}},

		// Thermos: process names.
		{"process name with a leading dot", `{"name": "web", "task": {"processes": [{"name": ".hidden", "cmdline": "true"}]}}`,
			[]Problem{p("task.processes[0].name", "Invalid process name: .hidden")}},
		{"process name with a slash", `{"task": {"processes": [{"name": "a/b", "cmdline": "true"}]}}`, []Problem{
			p("task.processes[0].name", "Invalid process name: a/b"),
			p("name", "Invalid name 'a/b'"),
		}},
		{"empty process name", `{"name": "web", "task": {"processes": [{"name": "", "cmdline": "true"}]}}`,
			[]Problem{p("task.processes[0].name", "Invalid process name: ")}},

		// client/config.py: update_config and health checks.
		{"max_total_failures equal to instances", `{"instances": 2, "update_config": {"max_total_failures": 2}}`,
			[]Problem{p("update_config.max_total_failures", "max_total_failures in update_config must be lesser than the job size. Based on your job size (2) you should use max_total_failures <= 1.")}},
		{"max_total_failures above the smallest instances", `{"instances": -9223372036854775808}`,
			[]Problem{
				p("update_config.max_total_failures", "max_total_failures in update_config must be lesser than the job size. Based on your job size (-9223372036854775808) you should use max_total_failures <= -9223372036854775809."),
				p("instances", "-9223372036854775808 does not fit the 32-bit integer of Aurora's API (JobConfiguration.instanceCount): the client fails to encode it"),
			}},
		{"max_total_failures above the default instances", `{"update_config": {"max_total_failures": 5}}`,
			[]Problem{p("update_config.max_total_failures", "max_total_failures in update_config must be lesser than the job size. Based on your job size (1) you should use max_total_failures <= 0.")}},
		{"dedicated job under 2% failures", `{"instances": 100, "constraints": {"dedicated": "alice/x"}, "update_config": {"max_total_failures": 1}}`,
			[]Problem{p("update_config.max_total_failures", "Since this is a dedicated job, you must set your max_total_failures in your update configuration to no less than 2% of your job size. Based on your job size (100) you should use max_total_failures >= 2.")}},
		{"negative watch_secs", `{"update_config": {"watch_secs": -1}}`,
			[]Problem{p("update_config.watch_secs", "Invalid value (-1) specified for watch_secs. Value cannot be less than 0.")}},
		{"negative health-check values", `{"health_check_config": {"initial_interval_secs": -1, "interval_secs": -1.5, "max_consecutive_failures": -2, "min_consecutive_successes": -3}}`,
			[]Problem{
				p("health_check_config.initial_interval_secs", "Invalid value (-1.0) specified for initial_interval_secs. Value cannot be less than 0."),
				p("health_check_config.interval_secs", "Invalid value (-1.5) specified for interval_secs. Value cannot be less than 0."),
				p("health_check_config.max_consecutive_failures", "Invalid value (-2) specified for max_consecutive_failures. Value cannot be less than 0."),
				p("health_check_config.min_consecutive_successes", "Invalid value (-3) specified for min_consecutive_successes. Value cannot be less than 0."),
			}},

		// client/config.py: announce.
		{"static port in a job that is not dedicated", `{"announce": {"portmap": {"http": "80", "https": " 443 ", "aurora": "http"}}}`, []Problem{
			p("announce.portmap[http]", "Job must be dedicated in order to specify static ports!"),
			p("announce.portmap[https]", "Job must be dedicated in order to specify static ports!"),
		}},

		// The client's cron_collision_policy (a cron schedule itself is valid).
		{"unknown cron collision policy", `{"cron_collision_policy": "SOMETIMES"}`,
			[]Problem{p("cron_collision_policy", "Invalid CronCollisionPolicy type: SOMETIMES")}},

		// pystachio enums.
		{"unknown logger destination and mode", `{"task": {"processes": [{"name": "hello", "cmdline": "true", "logger": {"destination": "syslog", "mode": "daily"}}]}}`, []Problem{
			p("task.processes[0].logger.destination", "LoggerDestination only accepts the following values: file, console, both, none"),
			p("task.processes[0].logger.mode", "LoggerMode only accepts the following values: standard, rotate"),
		}},

		// config/thrift.py: container and constraints.
		{"container of no type", `{"container": {}}`, []Problem{p("container", "If a container is specified it must set one type.")}},
		{"limit that is not an integer", `{"constraints": {"host": "limit:x"}}`,
			[]Problem{p("constraints[host]", "limit:x is not a valid limit value, must be integer")}},

		// sla_policy.
		{"empty sla policy", `{"sla_policy": {}}`, []Problem{p("sla_policy.coordinator_url", "CoordinatorSlaPolicy[coordinator_url] is required.")}},
		{"coordinator sla policy without url", `{"sla_policy": {"status_key": "drain"}}`, []Problem{p("sla_policy.coordinator_url", "CoordinatorSlaPolicy[coordinator_url] is required.")}},

		// Everything at once: every problem is reported.
		{"many problems", `{"cluster": null, "cron_schedule": "* * * * *", "instances": 2, "update_config": {"max_total_failures": 3},
			"task": {"resources": null, "processes": [{"name": "hello", "cmdline": "echo {{nope}}"}]}}`, []Problem{
			p("cluster", `Cluster required for job "hello"`),
			p("task.resources", "Task must specify resources!"),
			p("update_config.max_total_failures", "max_total_failures in update_config must be lesser than the job size. Based on your job size (2) you should use max_total_failures <= 1."),
			p("task.processes[0].cmdline", "Unexpected unbound refs: {{nope}}. Make sure you are not nesting template variables."),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantRejected(t, tc.patch, tc.want...)
		})
	}
}

func TestValidationError(t *testing.T) {
	j := parseJob(t, patched(t, `{"cluster": null, "role": null}`))
	err := j.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) || !errors.Is(err, ErrClient) || errors.Is(err, ErrSchema) || errors.Is(err, ErrScheduler) {
		t.Fatalf("error %v: want a *ValidationError that is ErrClient only", err)
	}
	if !ve.Has("role", `Role required for job "hello"`) || ve.Has("role", "x") {
		t.Error("Has")
	}
	want := "aurora: job configuration rejected by the Aurora client (2 problems):\n" +
		"\tcluster: Cluster required for job \"hello\"\n\trole: Role required for job \"hello\""
	if err.Error() != want {
		t.Errorf("Error() =\n%s\nwant\n%s", err, want)
	}
	j.Cluster, j.Role = new(string), new(string)
	*j.Cluster, *j.Role = "c", "r"
	if err := j.Validate(); err != nil {
		t.Errorf("fixed job: %v", err)
	}
	one := (&ValidationError{Stage: ErrSchema, Problems: []Problem{p("", "Unknown schema attribute x")}}).Error()
	if one != "aurora: job configuration does not match Aurora's job schema: Unknown schema attribute x" {
		t.Errorf("one problem: %s", one)
	}
}

func TestValidateDocument(t *testing.T) {
	if _, err := ValidateDocument([]byte(`{"jobs": [{"rol": 1}]}`)); !errors.Is(err, ErrSchema) {
		t.Errorf("unknown attribute: %v", err)
	}
	d, err := ValidateDocument(readFile(t, "testdata/jobs.json"))
	if err != nil || len(d.Jobs) != 2 {
		t.Fatalf("jobs.json: %v", err)
	}
	same := `{"jobs": [` + baseJob + `,` + baseJob + `]}`
	_, err = ValidateDocument([]byte(same))
	wantProblems(t, problemsOf(t, err, ErrClient), p("jobs[1]",
		"Multiple jobs match, please disambiguate by specifying a job key. (c1/alice/devel/hello is also jobs[0])"))
	if !strings.Contains(err.Error(), "jobs[1]: Multiple jobs match") {
		t.Errorf("Error() = %s", err)
	}
}

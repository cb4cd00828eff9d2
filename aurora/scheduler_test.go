package aurora

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateSchedulerAccepts(t *testing.T) {
	for _, tc := range []struct{ name, patch string }{
		{"devel", ``},
		{"prod", `{"environment": "prod"}`},
		{"test", `{"environment": "test"}`},
		{"staging", `{"environment": "staging"}`},
		{"staging with a number", `{"environment": "staging42"}`},
		{"identifiers of 255 characters", `{"role": "` + strings.Repeat("r", 255) + `", "name": "` + strings.Repeat("n", 255) + `"}`},
		{"4000 instances", `{"instances": 4000}`},
		{"the preemptible tier", `{"tier": "preemptible"}`},
		{"the preferred tier", `{"tier": "preferred"}`},
		{"the revocable tier", `{"tier": "revocable"}`},
		{"a cron job that is not a service", `{"cron_schedule": "* * * * *"}`},
		{"a cron schedule from a binding", `{"cron_schedule": "{{instances}} * * * *"}`},
		{"dedicated to the role", `{"constraints": {"dedicated": "alice/web"}}`},
		{"dedicated to anyone", `{"constraints": {"dedicated": "*/web"}}`},
		{"dedicated, negated", `{"constraints": {"dedicated": "!alice/web"}}`},
		{"dedicated to the same value twice", `{"constraints": {"dedicated": "alice/web,alice/web"}}`},
		{"dedicated to the interpolated role", `{"constraints": {"dedicated": "{{role}}/web"}}`},
		{"the Thermos executor named", `{"executor_config": {"name": "AuroraExecutor", "data": ""}}`},
		{"an executor config without a name", `{"executor_config": {"data": ""}}`},
		{"no GPU", `{"task": {"resources": {"gpu": 0}}}`},
		{"a coordinator SLA policy on a production tier", `{"tier": "preferred", "sla_policy": {"coordinator_url": "http://c"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := parseJob(t, patched(t, tc.patch)).ValidateScheduler(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestValidateSchedulerRejects(t *testing.T) {
	long := strings.Repeat("r", 256)
	for _, tc := range []struct {
		name, patch string
		want        []Problem
	}{
		{"no instances", `{"instances": 0}`, []Problem{p("instances", "Instance count must be positive.")}},
		{"negative instances", `{"instances": -1}`, []Problem{p("instances", "Instance count must be positive.")}},
		{"more than -max_tasks_per_job", `{"instances": 4001}`,
			[]Problem{p("instances", "Instance count must be between 1 and 4000 inclusive.")}},
		{"environment outside the allowed ones", `{"environment": "production"}`,
			[]Problem{p("environment", `Job environment production doesn't match: ^(prod|devel|test|staging\d*)$`)}},
		{"staging with letters", `{"environment": "stagingx"}`,
			[]Problem{p("environment", `Job environment stagingx doesn't match: ^(prod|devel|test|staging\d*)$`)}},
		{"role of 256 characters", `{"role": "` + long + `"}`,
			[]Problem{p("role", "Job key JobKey(role:"+long+", environment:devel, name:hello) is invalid.")}},
		{"name outside ASCII (the client accepts it)", `{"name": "wëb"}`,
			[]Problem{p("name", "Job key JobKey(role:alice, environment:devel, name:wëb) is invalid.")}},
		{"name of 256 characters", `{"name": "` + long + `"}`,
			[]Problem{p("name", "Job key JobKey(role:alice, environment:devel, name:"+long+") is invalid.")}},
		{"environment of 256 characters", `{"environment": "staging` + strings.Repeat("1", 249) + `"}`,
			[]Problem{
				p("environment", "Job key JobKey(role:alice, environment:staging"+strings.Repeat("1", 249)+", name:hello) is invalid."),
			}},
		{"tier with a space", `{"tier": "a b"}`, []Problem{p("tier", "Tier contains illegal characters: a b")}},
		{"empty tier", `{"tier": ""}`, []Problem{p("tier", "Tier contains illegal characters: ")}},
		{"tier of 256 characters", `{"tier": "` + long + `"}`, []Problem{p("tier", "Tier contains illegal characters: "+long)}},
		{"tier outside the configured ones", `{"tier": "gold"}`, []Problem{p("tier", "Invalid tier 'gold' in TaskConfig.")}},
		{"service on a cron schedule", `{"service": true, "cron_schedule": "* * * * *"}`,
			[]Problem{p("cron_schedule", "A service task may not be run on a cron schedule")}},
		{"empty cron schedule", `{"cron_schedule": ""}`, []Problem{p("cron_schedule", "Job has an empty cron schedule.")}},
		{"empty cron schedule of a service", `{"service": true, "cron_schedule": ""}`,
			[]Problem{p("cron_schedule", "Job has an empty cron schedule.")}},
		{"cron schedule out of range", `{"cron_schedule": "60 * * * *"}`,
			[]Problem{p("cron_schedule", "Invalid cron schedule: 60 * * * *")}},
		{"cron schedule from a binding, out of range", `{"instances": 99, "cron_schedule": "{{instances}} * * * *"}`,
			[]Problem{p("cron_schedule", "Invalid cron schedule: 99 * * * *")}},
		{"another executor", `{"executor_config": {"name": "Custom", "data": "{}"}}`,
			[]Problem{p("executor_config.name", "Configuration for executor 'Custom' doesn't exist.")}},
		{"a Docker container", `{"container": {"docker": {"image": "debian:12"}}}`,
			[]Problem{p("container.docker", "This scheduler is not configured to allow the container type DOCKER")}},
		{"Docker parameters", `{"container": {"docker": {"image": "debian:12", "parameters": [{"name": "network", "value": "host"}]}}}`,
			[]Problem{
				p("container.docker.parameters", "This scheduler is configured to disallow Docker parameters."),
				p("container.docker", "This scheduler is not configured to allow the container type DOCKER"),
			}},
		{"a GPU", `{"task": {"resources": {"gpu": 1}}}`,
			[]Problem{p("task.resources.gpu", "GPU resource support is disabled in this cluster.")}},
		{"an SLA policy on the default tier", `{"sla_policy": {"coordinator_url": "http://c"}}`,
			[]Problem{p("sla_policy", "Tier 'preemptible' does not support SlaPolicy.")}},
		{"an SLA policy on the revocable tier", `{"tier": "revocable", "sla_policy": {"coordinator_url": "http://c"}}`,
			[]Problem{p("sla_policy", "Tier 'revocable' does not support SlaPolicy.")}},
		{"dedicated to another role", `{"constraints": {"dedicated": "bob/web"}}`,
			[]Problem{p("constraints[dedicated]", "Only bob may use hosts dedicated for that role.")}},
		{"dedicated to two values", `{"constraints": {"dedicated": "alice/a,alice/b"}}`,
			[]Problem{p("constraints[dedicated]", "A dedicated constraint must have exactly one value")}},
		{"dedicated as a limit", `{"constraints": {"dedicated": "limit:1"}}`,
			[]Problem{p("constraints[dedicated]", "A dedicated constraint must be of value type.")}},
		{"dedicated without a role", `{"constraints": {"dedicated": "/web"}}`,
			[]Problem{p("constraints[dedicated]", "Only  may use hosts dedicated for that role.")}},
		{"dedicated, negated, to another role", `{"constraints": {"dedicated": "!bob/web"}}`,
			[]Problem{p("constraints[dedicated]", "Only bob may use hosts dedicated for that role.")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parseJob(t, patched(t, tc.patch)).ValidateScheduler()
			if err == nil {
				t.Fatal("ValidateScheduler accepted it")
			}
			wantProblems(t, problemsOf(t, err, ErrScheduler), tc.want...)
		})
	}
}

// The scheduler's rules are not the client's: a job can pass one and fail
// the other.
func TestClientAndSchedulerAreSeparate(t *testing.T) {
	j := parseJob(t, patched(t, `{"environment": "production"}`))
	if err := j.Validate(); err != nil {
		t.Errorf("the client accepts any well-formed environment: %v", err)
	}
	if err := j.ValidateScheduler(); err == nil {
		t.Error("the scheduler refuses it")
	}
	d, err := ParseDocument([]byte(`{"jobs": [` + baseJob + `, {"role": "x", "environment": "qa"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, problemsOf(t, d.ValidateScheduler(), ErrScheduler),
		p("jobs[1].name", "Job key JobKey(role:x, environment:qa, name:{{task.name}}) is invalid."),
		p("jobs[1].environment", `Job environment qa doesn't match: ^(prod|devel|test|staging\d*)$`))
}

// The scheduler's crontab parser, at its edges.
func TestParseCrontab(t *testing.T) {
	for _, s := range []string{
		"* * * * *",
		"*/5 * * * *",
		"0 0 1 * *",
		"0 12 * * MON-FRI",
		"0 12 * * sun",
		"0-59/15 * * JAN,jul *",
		"5,10,,15 * * * *",
		"00005 * * * *",
		"0\t0  * * *",
		"0 0 1 * 0-6",
		"0 0 1-31 * MON",
		"0 0 * * 0,1,2,3,4,5,6",
		"0 0 1 * */1",
		"59 23 31 12 *",
		"59 23 * 12 6",
		"*/100 * * * *",
		"1-9/8 * * * *",
		"0 0 * 1JAN *", // 1 then 1: November, as the scheduler reads it
	} {
		if err := parseCrontab(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{
		"",
		"* * * *",
		"* * * * * *",
		" * * * * *",
		"* * * * * ",
		"* * * * *\n",
		"60 * * * *",
		"* 24 * * *",
		"* * 0 * *",
		"* * 32 * *",
		"* * * 0 *",
		"* * * 13 *",
		"* * * * 7",
		"*/0 * * * *",
		"5-1 * * * *",
		"0-10/10 * * * *",
		"1-9/9 * * * *",
		"1-9/0 * * * *",
		"0 0 1 * MON",
		"0 0 1 * 1-5",
		",, * * * *",
		"@daily",
		"? * * * *",
		"* * * JUNE *",
		"* * * * MONDAY",
		"99999999999 * * * *",
		"1/2 * * * *",
		"*/ * * * *",
		"-1 * * * *",
		"1- * * * *",
		"1-2-3 * * * *",
		"L * * * *",
		"٣ * * * *",
	} {
		if err := parseCrontab(s); err == nil {
			t.Errorf("%q: accepted", s)
		}
	}
}

func TestIsCron(t *testing.T) {
	for patch, want := range map[string]bool{
		``:                               false,
		`{"cron_schedule": "0 * * * *"}`: true,
		`{"cron_schedule": ""}`:          true, // the client's has_cron_schedule
	} {
		j := parseJob(t, patched(t, patch))
		if got := j.IsCron(); got != want {
			t.Errorf("%s: IsCron = %v, want %v", patch, got, want)
		}
	}
}

// ValidateForScheduler stops at the first stage that fails.
func TestValidateForScheduler(t *testing.T) {
	if _, err := ValidateForScheduler(patched(t, ``)); err != nil {
		t.Fatal(err)
	}
	_, err := ValidateForScheduler(patched(t, `{"environment": "qa"}`))
	wantProblems(t, problemsOf(t, err, ErrScheduler), p("environment", `Job environment qa doesn't match: ^(prod|devel|test|staging\d*)$`))
	_, err = ValidateForScheduler(patched(t, `{"environment": "q a"}`))
	wantProblems(t, problemsOf(t, err, ErrClient), p("environment", "Invalid environment 'q a'"))
	if _, err := ValidateForScheduler([]byte(`{"bogus": 1}`)); !errors.Is(err, ErrSchema) {
		t.Fatalf("schema: %v", err)
	}
}

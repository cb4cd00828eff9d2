package aurora

import (
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
		{"a tier", `{"tier": "preemptible"}`},
		{"a cron job that is not a service", `{"cron_schedule": "* * * * *"}`},
		{"dedicated to the role", `{"constraints": {"dedicated": "alice/web"}}`},
		{"dedicated to anyone", `{"constraints": {"dedicated": "*/web"}}`},
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
		{"environment outside the allowed ones", `{"environment": "production"}`,
			[]Problem{p("environment", `Job environment production doesn't match: ^(prod|devel|test|staging\d*)$`)}},
		{"staging with letters", `{"environment": "stagingx"}`,
			[]Problem{p("environment", `Job environment stagingx doesn't match: ^(prod|devel|test|staging\d*)$`)}},
		{"role of 256 characters", `{"role": "` + long + `"}`,
			[]Problem{p("role", "Job key JobKey(role:"+long+", environment:devel, name:hello) is invalid.")}},
		{"name outside ASCII (the client accepts it)", `{"name": "wëb"}`,
			[]Problem{p("name", "Job key JobKey(role:alice, environment:devel, name:wëb) is invalid.")}},
		{"tier with a space", `{"tier": "a b"}`, []Problem{p("tier", "Tier contains illegal characters: a b")}},
		{"service on a cron schedule", `{"service": true, "cron_schedule": "* * * * *"}`,
			[]Problem{p("cron_schedule", "A service task may not be run on a cron schedule")}},
		{"dedicated to another role", `{"constraints": {"dedicated": "bob/web"}}`,
			[]Problem{p("constraints[dedicated]", "Only bob may use hosts dedicated for that role.")}},
		{"dedicated to two values", `{"constraints": {"dedicated": "alice/a,alice/b"}}`,
			[]Problem{p("constraints[dedicated]", "A dedicated constraint must have exactly one value")}},
		{"dedicated as a limit", `{"constraints": {"dedicated": "limit:1"}}`,
			[]Problem{p("constraints[dedicated]", "A dedicated constraint must be of value type.")}},
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

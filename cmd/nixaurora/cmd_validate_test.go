package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// An integer beyond int64 is refused, naming the field; priority is an i32
// of Aurora's API, whose extremes pass.
func TestValidateIntegerRange(t *testing.T) {
	dir := t.TempDir()
	job := func(priority string) string {
		f := filepath.Join(dir, "priority"+priority+".json")
		os.WriteFile(f, []byte(`{"name": "x", "role": "r", "cluster": "c", "environment": "devel", "priority": `+priority+`,
			"task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`), 0o644)
		return f
	}
	for _, n := range []string{"-2147483648", "2147483647"} {
		if code, out, errOut := runCLI(t, "validate", job(n)); code != exitOK {
			t.Errorf("priority %s: exit %d\n%s%s", n, code, out, errOut)
		}
	}
	for _, n := range []string{"-9223372036854775809", "9223372036854775808"} {
		f := job(n)
		code, _, errOut := runCLI(t, "validate", f)
		want := "priority: expected an integer, got " + n + " (out of range for a 64-bit integer)"
		if code != exitFailure || !strings.Contains(errOut, want) || !strings.Contains(errOut, f) {
			t.Errorf("priority %s: exit %d, want 1 and %q naming the file:\n%s", n, code, want, errOut)
		}
	}
}

// writeJob writes a job JSON document into dir and returns its path.
func writeJob(t *testing.T, dir, name, doc string) string {
	t.Helper()
	f := filepath.Join(dir, name)
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// jobWith is a job Aurora's client accepts, with extra top-level attributes.
func jobWith(extra string) string {
	if extra != "" {
		extra += ", "
	}
	return `{` + extra + `"name": "hello", "role": "www-data", "cluster": "devcluster",
		"task": {"processes": [{"name": "hello", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`
}

// The scheduler's rules run by default and are reported as the scheduler's;
// --client-only skips them.
func TestValidateScheduler(t *testing.T) {
	dir := t.TempDir()
	qa := writeJob(t, dir, "qa.json", jobWith(`"environment": "qa"`))
	docker := writeJob(t, dir, "docker.json", jobWith(`"environment": "devel", "container": {"docker": {"image": "debian:12"}}`))
	for _, c := range []struct{ file, want string }{
		{qa, `environment: Job environment qa doesn't match: ^(prod|devel|test|staging\d*)$`},
		{docker, "container.docker: This scheduler is not configured to allow the container type DOCKER"},
	} {
		code, out, errOut := runCLI(t, "validate", c.file)
		if code != exitFailure || out != "" {
			t.Errorf("%s: exit %d, stdout %q, want 1 and nothing", c.file, code, out)
		}
		for _, want := range []string{c.file, "rejected by the Aurora scheduler", c.want, schedulerNote} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%s: stderr lacks %q:\n%s", c.file, want, errOut)
			}
		}
		code, out, errOut = runCLI(t, "validate", "--client-only", c.file)
		if code != exitOK || out != c.file+": ok\n" {
			t.Errorf("%s --client-only: exit %d\n%s%s", c.file, code, out, errOut)
		}
	}

	// A job the client refuses is not also judged by the scheduler, which
	// never sees it.
	bad := writeJob(t, dir, "bad.json", jobWith(`"environment": "q a"`))
	code, _, errOut := runCLI(t, "validate", bad)
	if code != exitFailure || !strings.Contains(errOut, "rejected by the Aurora client") ||
		!strings.Contains(errOut, "Invalid environment 'q a'") || strings.Contains(errOut, "scheduler") {
		t.Errorf("client rejection: exit %d\n%s", code, errOut)
	}

	// Each file is reported on its own: the good one is ok, the other fails.
	good := writeJob(t, dir, "good.json", jobWith(`"environment": "prod"`))
	code, out, errOut := runCLI(t, "validate", good, qa)
	if code != exitFailure || out != good+": ok\n" || !strings.Contains(errOut, qa) || strings.Contains(errOut, good) {
		t.Errorf("good and qa: exit %d\n%s%s", code, out, errOut)
	}
}

func TestCreateCommand(t *testing.T) {
	doc, err := aurora.ParseDocument([]byte(`{"jobs": [` + jobWith(`"environment": "devel"`) + `, ` +
		jobWith(`"environment": "prod", "cron_schedule": "0 * * * *"`) + `]}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := createCommand(doc.Jobs[0], "j.json"), "aurora job create devcluster/www-data/devel/hello j.json --read-json"; got != want {
		t.Errorf("service: %q, want %q", got, want)
	}
	if got, want := createCommand(doc.Jobs[1], "j.json"), "aurora cron schedule devcluster/www-data/prod/hello j.json --read-json"; got != want {
		t.Errorf("cron job: %q, want %q", got, want)
	}
	if got, want := cronNote(doc.Jobs, "j.json"),
		" (jobs[1] is a cron job: schedule it with 'aurora cron schedule devcluster/www-data/prod/hello j.json --read-json', not 'aurora job create')"; got != want {
		t.Errorf("note of a list:\n%s\nwant\n%s", got, want)
	}
	if got, want := cronNote(doc.Jobs[1:], "j.json"),
		" (a cron job: schedule it with 'aurora cron schedule devcluster/www-data/prod/hello j.json --read-json', not 'aurora job create')"; got != want {
		t.Errorf("note of one job:\n%s\nwant\n%s", got, want)
	}
	if got := cronNote(doc.Jobs[:1], "j.json"); got != "" {
		t.Errorf("a job that is not cron has a note: %q", got)
	}
	// The key is the one Aurora derives: the name defaults to the task's.
	doc, err = aurora.ParseDocument([]byte(`{"role": "r", "cluster": "c", "environment": "test", "cron_schedule": "",
		"task": {"name": "{{role}}-t", "processes": [{"name": "p", "cmdline": "true"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := createCommand(doc.Jobs[0], "j.json"), "aurora cron schedule c/r/test/r-t j.json --read-json"; got != want {
		t.Errorf("derived key: %q, want %q", got, want)
	}
}

// A cron job is valid for Aurora, through 'aurora cron schedule': the "ok"
// line names that command.
func TestValidateCronJob(t *testing.T) {
	dir := t.TempDir()
	f := writeJob(t, dir, "cron.json", jobWith(`"environment": "devel", "cron_schedule": "*/5 * * * *"`))
	code, out, errOut := runCLI(t, "validate", f)
	want := f + ": ok (a cron job: schedule it with 'aurora cron schedule devcluster/www-data/devel/hello " + f +
		" --read-json', not 'aurora job create')\n"
	if code != exitOK || out != want {
		t.Errorf("exit %d, stdout\n%s\nwant\n%s\nstderr:\n%s", code, out, want, errOut)
	}

	// The scheduler's cron rules apply once the client's pass.
	bad := writeJob(t, dir, "badcron.json", jobWith(`"environment": "devel", "cron_schedule": "0 0 1 * MON"`))
	code, _, errOut = runCLI(t, "validate", bad)
	if code != exitFailure || !strings.Contains(errOut, "Invalid cron schedule: 0 0 1 * MON") {
		t.Errorf("bad schedule: exit %d\n%s", code, errOut)
	}
}

// What Aurora accepts but the author may not mean is a warning on stderr:
// the file still passes, and stdout keeps its "ok" line alone.
func TestValidateWarnings(t *testing.T) {
	dir := t.TempDir()
	f := writeJob(t, dir, "warn.json", `{"name": "hello", "role": "www-data", "cluster": "devcluster", "environment": "devel", "instances": "2",
		"task": {"processes": [{"name": "p", "cmdline": "true"}, {"name": "p", "cmdline": "false"}], "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}}}`)
	code, out, errOut := runCLI(t, "validate", f)
	if code != exitOK || out != f+": ok\n" {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		f + ": warning: instances: string \"2\" coerced to Integer 2, as Aurora's client does\n",
		f + ": warning: task.processes[1].name: duplicate process name p (also task.processes[0]): Thermos runs only the last of them\n",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/compile"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// TestImportRoundTripExamples imports every example's built JSON, builds
// the expression, and gets the same jobs back.
func TestImportRoundTripExamples(t *testing.T) {
	testnix.Require(t)
	root := repoRoot(t)
	t.Chdir(root)
	for _, ex := range examples {
		t.Run(filepath.Base(ex.dir), func(t *testing.T) {
			// The examples' flags are the CLI's (--arg NAME=EXPR).
			var opts exprOptions
			for i := 0; i+1 < len(ex.args); i += 2 {
				opts.args = append(opts.args, ex.args[i+1])
			}
			args, err := opts.nixArgs()
			if err != nil {
				t.Fatal(err)
			}
			built := buildJobs(t, ex.dir, args)
			for _, b := range built {
				roundTrip(t, b.JSON)
			}
		})
	}
}

// TestImportRoundTripEverything covers every field of Aurora's schema,
// every constructor, and cmdlines that need escaping (see the file).
func TestImportRoundTripEverything(t *testing.T) {
	testnix.Require(t)
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "nixgen", "testdata", "everything.json"))
	if err != nil {
		t.Fatal(err)
	}
	nix := roundTrip(t, data)
	for _, want := range []string{
		"Service {", "Job {", "Task {", "Process {", "Resources {", "Logger {", "RotatePolicy {",
		"UpdateConfig {", "QueueUpdateStrategy {", "HealthCheckConfig {", "HealthCheckerConfig {",
		"HttpHealthChecker {", "ShellHealthChecker {", "LifecycleConfig {", "HttpLifecycleConfig {",
		"Announcer {", "Metadata {", "PartitionPolicy {", "ExecutorConfig {", "Container {", "Docker {",
		"Parameter {", "CoordinatorSlaPolicy {",
		"constraints = order [ fetch web-server_v2 ] ++ order [ fetch order_process ];",
		"ram = 1536 * MB;", "disk = 10737418241;", "log_size = 50 * MB;",
		`--home="''${HOME}"`, "'''quotes'''",
		"# This cmdline fetches software at run time (curl, hdfs): replace it with a Nix package",
		"inherit nixInit;",
	} {
		if !strings.Contains(nix, want) {
			t.Errorf("the expression lacks %q", want)
		}
	}
}

// buildJobs builds an expression and returns its job files.
func buildJobs(t *testing.T, file string, args []string) []compile.Output {
	t.Helper()
	outs, err := compile.Build(context.Background(), compile.Options{File: file, Args: args, Progress: io.Discard})
	if err != nil {
		t.Fatalf("build %s: %v", file, err)
	}
	return outs
}

// roundTrip imports input, builds the expression with the repository's
// library, checks that the jobs are the input's, and returns the
// expression.
func roundTrip(t *testing.T, input []byte) string {
	t.Helper()
	dir := t.TempDir()
	in := filepath.Join(dir, "job.json")
	if err := os.WriteFile(in, input, 0o644); err != nil {
		t.Fatal(err)
	}
	expr := filepath.Join(dir, "job.nix")
	lib, err := filepath.Abs(filepath.Join(repoRoot(t), "nix"))
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCLI(t, "import", in, "-o", expr, "--library", lib); code != exitOK {
		t.Fatalf("import: exit %d\n%s", code, errOut)
	}
	nix, err := os.ReadFile(expr)
	if err != nil {
		t.Fatal(err)
	}
	var got []aurora.Job
	for _, out := range buildJobs(t, expr, nil) {
		got = append(got, out.Jobs...)
	}
	want, err := aurora.Parse(input)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("built %d jobs, want %d\n%s", len(got), len(want), nix)
	}
	for i := range want {
		w, g := comparable(t, want[i]), comparable(t, got[i])
		if w != g {
			t.Errorf("job %d changed in the round trip:\n input %s\n built %s\nexpression:\n%s", i, w, g, nix)
		}
	}
	return string(nix)
}

// comparable is a job as Aurora means it, as JSON: without the library's
// init processes and the order constraints it adds for them, with every
// default filled in, and with the defaults the library writes out (the
// job's and task's names, the announcer's portmap, a rotating logger's
// policy) written as the library writes them.
func comparable(t *testing.T, job aurora.Job) string {
	t.Helper()
	job.Name = ptr(job.JobName())
	job.Templates = nil
	if task := job.Task; task != nil {
		task.Processes = slices.DeleteFunc(slices.Clone(task.Processes), func(p aurora.Process) bool {
			return isInitName(p.Name)
		})
		task.Constraints = slices.DeleteFunc(slices.Clone(task.Constraints), func(c aurora.Constraint) bool {
			return len(c.Order) == 2 && isInitName(&c.Order[0])
		})
		if task.Name == nil && len(task.Processes) > 0 {
			task.Name = task.Processes[0].Name
		}
		for i := range task.Processes {
			if l := task.Processes[i].Logger; l != nil && l.Mode != nil && *l.Mode == "rotate" && l.Rotate == nil {
				l.Rotate = &aurora.RotatePolicy{}
			}
		}
	}
	job = job.Defaults()
	if a := job.Announce; a != nil {
		for k, v := range a.Portmap {
			if v == "{{primary_port}}" {
				a.Portmap[k] = *a.PrimaryPort
			}
		}
	}
	data, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func isInitName(n *string) bool { return n != nil && (*n == "nix_init" || *n == "nix_init_final") }

func ptr[T any](v T) *T { return &v }

func TestImportOutputFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "job.json")
	job := `{"cluster": "c", "role": "r", "environment": "devel", "task": {"processes": [{"name": "p", "cmdline": "true"}], "resources": {"cpu": 1, "ram": 67108864, "disk": 2147483648}}}`
	if err := os.WriteFile(in, []byte(job), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCLI(t, "import", in)
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"{ aurora ? import ./nix-aurora/nix, nixInit ? { } }:",
		"resources = Resources { cpu = 1.0; ram = 64 * MB; disk = 2 * GB; };",
		"p = Process {",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	expr := filepath.Join(dir, "job.nix")
	if err := os.WriteFile(expr, []byte("# hand-edited\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "import", in, "-o", expr)
	if code != exitFailure || !strings.Contains(errOut, "exists: pass --force") {
		t.Fatalf("over an existing file: exit %d\n%s", code, errOut)
	}
	if data, _ := os.ReadFile(expr); string(data) != "# hand-edited\n" {
		t.Fatalf("the existing file was changed: %q", data)
	}
	if code, _, errOut = runCLI(t, "import", in, "-o", expr, "--force", "--library", "<nix-aurora/nix>"); code != exitOK {
		t.Fatalf("--force: exit %d\n%s", code, errOut)
	}
	if data, _ := os.ReadFile(expr); !strings.Contains(string(data), "aurora ? import <nix-aurora/nix>,") {
		t.Fatalf("--force did not write the expression with the library path:\n%s", data)
	}
	if code, _, errOut = runCLI(t, "import", in, "--library", "my lib"); code != exitFailure || !strings.Contains(errOut, "Nix path literal") {
		t.Fatalf("--library with a space: exit %d\n%s", code, errOut)
	}
}

func TestImportBadInput(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(in, []byte(`{"cluster": "c", "task": {"processes": [{"name": "p", "cmdline": "x", "max_failures": "many"}]}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "import", in)
	if code != exitFailure || !strings.Contains(errOut, "import: "+in+": ") || !strings.Contains(errOut, "task.processes[0].max_failures") {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "import", filepath.Join(dir, "missing.json")); code != exitFailure || !strings.Contains(errOut, "import: read ") {
		t.Fatalf("missing file: exit %d\n%s", code, errOut)
	}
	if code, _, _ := runCLI(t, "import"); code != exitUsage {
		t.Fatalf("no argument: exit %d", code)
	}
}

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// noCache keeps nix-build from asking the default public cache, which this
// network cannot reach.
var noCache = []string{"--arg", "pkgs=import ./examples/stubpkgs {}"}

type example struct {
	dir  string
	args []string
}

var examples = []example{
	{dir: "examples/hello_world"},
	{dir: "examples/web_service"},
	{dir: "examples/python_hello_world", args: noCache},
	{dir: "examples/prometheus", args: noCache},
	{dir: "examples/cron_report"},
}

func TestBuildExamples(t *testing.T) {
	testnix.Require(t)
	root := repoRoot(t)
	t.Chdir(root)
	for _, ex := range examples {
		t.Run(filepath.Base(ex.dir), func(t *testing.T) {
			link := filepath.Join(t.TempDir(), "job.json")
			args := append([]string{"build", ex.dir, "-o", link}, ex.args...)
			code, out, errOut := runCLI(t, args...)
			if code != exitOK {
				t.Fatalf("exit %d\n%s", code, errOut)
			}
			path := strings.TrimSpace(out)
			if !strings.HasPrefix(path, "/nix/store/") || !strings.HasSuffix(path, ".json") {
				t.Fatalf("printed %q, want the JSON's store path", path)
			}
			if target, _ := os.Readlink(link); target != path {
				t.Fatalf("-o link points to %q, want %q", target, path)
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := aurora.ValidateForScheduler(data)
			if err != nil {
				t.Fatalf("built JSON does not validate (client and scheduler): %v", err)
			}
			for _, job := range doc.Jobs {
				checkInit(t, job)
			}
		})
	}
}

// checkInit checks what the init processes promise: nix_init runs before
// every regular process, nix_init_final (only when there are final
// processes) before every final one, and the root each init realises for a
// process has every store path of that process's cmdline in its closure.
func checkInit(t *testing.T, job aurora.Job) {
	t.Helper()
	task := job.Task
	before := map[string]map[string]bool{} // process -> processes ordered right before it
	for _, c := range task.Constraints {
		for i := 1; i < len(c.Order); i++ {
			if before[c.Order[i]] == nil {
				before[c.Order[i]] = map[string]bool{}
			}
			before[c.Order[i]][c.Order[i-1]] = true
		}
	}
	roots := map[string]string{} // process name -> root path, from the init cmdlines
	inits, err := job.InitRoots()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range inits {
		roots[r.Name] = r.Path
	}
	hasFinal := false
	for _, p := range task.Processes {
		name := deref(p.Name)
		if name == "nix_init" || name == "nix_init_final" {
			if (name == "nix_init_final") != p.IsFinal() {
				t.Errorf("%s: final = %v", name, p.IsFinal())
			}
			continue
		}
		init := "nix_init"
		if p.IsFinal() {
			init = "nix_init_final"
			hasFinal = true
		}
		if !before[name][init] {
			t.Errorf("process %s is not ordered after %s", name, init)
		}
	}
	if _, ok := task.ProcessByName("nix_init_final"); ok != hasFinal {
		t.Errorf("nix_init_final present = %v, final processes = %v", ok, hasFinal)
	}
	for _, p := range task.Processes {
		name := deref(p.Name)
		if name == "nix_init" || name == "nix_init_final" {
			continue
		}
		root, ok := roots[name]
		if !ok {
			t.Errorf("no init process realises a root for %s", name)
			continue
		}
		closure := closureOf(t, root)
		for _, sp := range aurora.StorePaths(deref(p.Cmdline)) {
			if !closure[sp] {
				t.Errorf("%s: %s is in the cmdline but not in the closure of its root %s", name, sp, root)
			}
		}
	}
}

func closureOf(t *testing.T, path string) map[string]bool {
	t.Helper()
	out, err := exec.Command("nix-store", "-qR", path).Output()
	if err != nil {
		t.Fatalf("nix-store -qR %s: %v", path, err)
	}
	set := map[string]bool{}
	for _, p := range strings.Fields(string(out)) {
		set[p] = true
	}
	return set
}

func TestBuildPrint(t *testing.T) {
	testnix.Require(t)
	t.Chdir(repoRoot(t))
	code, out, errOut := runCLI(t, "build", "examples/hello_world", "--print")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	if !strings.HasPrefix(out, "{\n  \"") || !strings.Contains(out, `"name": "hello_world"`) {
		t.Fatalf("--print did not print indented JSON:\n%s", out)
	}
	if _, err := aurora.ValidateDocument([]byte(out)); err != nil {
		t.Fatal(err)
	}
}

func TestBuildFailureNamesFileAndAttribute(t *testing.T) {
	testnix.Require(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "jobs.nix")
	lib := filepath.Join(repoRoot(t), "nix")
	os.WriteFile(file, []byte(`let aurora = import `+lib+`; in with aurora; {
  bad = Job { cluster = "devcluster"; role = "www-data"; environment = "devel"; name = "bad";
    task = Task { processes = [ (Process { name = "p"; cmdline = "true"; }) ];
                  resources = Resources { cpu = 0; ram = 1 * MB; disk = 1 * MB; }; }; };
  missing = builtins.derivation { name = "x"; system = builtins.currentSystem; builder = "/bin/sh"; args = [ "-c" "exit 1" ]; };
}`), 0o644)
	code, _, errOut := runCLI(t, "build", file, "-A", "bad")
	if code != exitFailure {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{file, "attribute bad", "devcluster/www-data/devel/bad", "task.resources.cpu"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("message lacks %q:\n%s", want, errOut)
		}
	}
	code, _, errOut = runCLI(t, "build", file, "-A", "missing")
	if code != exitFailure || !strings.Contains(errOut, "attribute missing") || !strings.Contains(errOut, "failed") {
		t.Fatalf("failing derivation: exit %d\n%s", code, errOut)
	}
	code, _, errOut = runCLI(t, "build", file, "-A", "bad", "extra")
	if code != exitUsage {
		t.Fatalf("two files: exit %d %s", code, errOut)
	}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// jsonExpr writes a Nix expression whose build is the job JSON doc, as it
// is: the Nix job library is not involved, so any document can be built.
func jsonExpr(t *testing.T, doc string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "job.json"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "default.nix")
	if err := os.WriteFile(file, []byte(`builtins.derivation {
  name = "job.json"; system = builtins.currentSystem; builder = "/bin/sh";
  args = [ "-c" "printf '%s' \"$json\" > $out" ]; json = builtins.readFile ./job.json;
}`), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// build checks the scheduler's rules by default, as validate does, and
// --client-only skips them.
func TestBuildScheduler(t *testing.T) {
	testnix.Require(t)
	file := jsonExpr(t, jobWith(`"environment": "qa"`))
	code, out, errOut := runCLI(t, "build", file)
	if code != exitFailure || out != "" {
		t.Fatalf("exit %d, stdout %q, want 1 and nothing\n%s", code, out, errOut)
	}
	for _, want := range []string{file, "rejected by the Aurora scheduler",
		`environment: Job environment qa doesn't match: ^(prod|devel|test|staging\d*)$`, schedulerNote} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	code, out, errOut = runCLI(t, "build", "--client-only", file)
	if code != exitOK || !strings.HasPrefix(out, "/nix/store/") || strings.Count(out, "\n") != 1 {
		t.Fatalf("--client-only: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "cron") {
		t.Errorf("a job that is not cron is named a cron job:\n%s", errOut)
	}
}

// A built cron job is named on stderr with the command that takes it; stdout
// stays the store path alone.
func TestBuildCronJob(t *testing.T) {
	testnix.Require(t)
	file := jsonExpr(t, jobWith(`"environment": "devel", "cron_schedule": "0 * * * *"`))
	code, out, errOut := runCLI(t, "build", file)
	path := strings.TrimSpace(out)
	if code != exitOK || !strings.HasPrefix(path, "/nix/store/") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	want := path + ": ok (a cron job: schedule it with 'aurora cron schedule devcluster/www-data/devel/hello " + path +
		" --read-json', not 'aurora job create')\n"
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr lacks\n%s\n%s", want, errOut)
	}
}

// Nix's evaluation error reaches stderr once, live as Nix writes it; the
// final line names the file and attribute and points up to it.
func TestBuildNixErrorPrintedOnce(t *testing.T) {
	testnix.Require(t)
	file := filepath.Join(t.TempDir(), "jobs.nix")
	// The message is made at evaluation, so that Nix's own quote of the
	// source (2.26 on) does not hold it.
	os.WriteFile(file, []byte(`{ broken = throw ("the job library " + "says no"); }`), 0o644)
	code, out, errOut := runCLI(t, "build", file, "-A", "broken")
	if code != exitFailure || out != "" {
		t.Fatalf("exit %d, stdout %q\n%s", code, out, errOut)
	}
	if n := strings.Count(errOut, "the job library says no"); n != 1 {
		t.Errorf("Nix's error is printed %d times, want once:\n%s", n, errOut)
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	last := lines[len(lines)-1]
	want := "nixaurora build: nix-build " + file + " (attribute broken): "
	if !strings.HasPrefix(last, want) || !strings.HasSuffix(last, "(Nix's error above)") {
		t.Errorf("last line %q, want %q...(Nix's error above)", last, want)
	}
	if i := strings.Index(errOut, "the job library says no"); i > strings.LastIndex(errOut, last) {
		t.Errorf("Nix's error comes after the summary:\n%s", errOut)
	}
}

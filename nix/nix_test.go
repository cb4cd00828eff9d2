// Package nix_test checks the Nix library (nix/aurora.nix) and the examples
// with real Nix: the evaluation errors of nix/tests/errors.nix, the accepted
// configs of nix/tests/accept.nix, and real builds of jobs and examples.
package nix_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// noSubstituters keeps builds offline: the default cache is unreachable
// here, and asking it only costs retries.
var noSubstituters = []string{"--option", "substituters", ""}

// repoRoot is the repository's root; tests run in the package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// runNix runs a Nix command in the repository's root.
func runNix(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), args[0], args[1:]...)
	cmd.Dir = repoRoot(t)
	var out, errOut bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// mustNix runs a Nix command that must succeed and returns its stdout.
func mustNix(t *testing.T, args ...string) string {
	t.Helper()
	stdout, stderr, err := runNix(t, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

// evalJSON evaluates expr strictly and decodes it into v.
func evalJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := mustNix(t, append([]string{"nix-instantiate", "--eval", "--strict", "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decoding the result of %v: %v\n%s", args, err, out)
	}
}

// build runs nix-build with an out link in a temporary directory and
// returns the output path.
func build(t *testing.T, args ...string) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "result")
	args = append(append([]string{"nix-build", "--out-link", link}, noSubstituters...), args...)
	out := strings.TrimSpace(mustNix(t, args...))
	lines := strings.Split(out, "\n")
	return lines[len(lines)-1]
}

func TestErrorCases(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	var cases map[string][]string
	evalJSON(t, &cases, "-E", "builtins.mapAttrs (name: c: c.expect) (import ./nix/tests/errors.nix)")
	if len(cases) == 0 {
		t.Fatal("nix/tests/errors.nix has no cases")
	}
	for name, expect := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			expr := fmt.Sprintf("(import ./nix/tests/errors.nix).%q.job.json", name)
			stdout, stderr, err := runNix(t, "nix-instantiate", "--eval", "--strict", "-E", expr)
			if err == nil {
				t.Fatalf("the job was accepted, want an error; it evaluated to\n%s", stdout)
			}
			if !strings.Contains(stderr, "error: aurora: job ") {
				t.Errorf("the error does not start with the job's key:\n%s", stderr)
			}
			for _, want := range expect {
				if !strings.Contains(stderr, want) {
					t.Errorf("the error lacks %q:\n%s", want, stderr)
				}
			}
		})
	}
}

func TestAcceptedCases(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	var cases map[string]struct {
		Actual   json.RawMessage `json:"actual"`
		Expected json.RawMessage `json:"expected"`
	}
	evalJSON(t, &cases, "-E", "builtins.mapAttrs (name: c: { inherit (c) actual expected; }) (import ./nix/tests/accept.nix).cases")
	if len(cases) == 0 {
		t.Fatal("nix/tests/accept.nix has no cases")
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var actual, expected any
			if err := json.Unmarshal(c.Actual, &actual); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(c.Expected, &expected); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(actual, expected) {
				t.Errorf("got\n%s\nwant\n%s", c.Actual, c.Expected)
			}
		})
	}
}

// TestJobsBuild builds the accepted jobs, one of them larger than an
// environment variable may be, and checks each JSON file.
func TestJobsBuild(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	var jobs map[string]struct {
		Out  string `json:"out"`
		JSON string `json:"json"`
	}
	evalJSON(t, &jobs, "-E", "builtins.mapAttrs (name: j: { out = j.outPath; inherit (j) json; }) (import ./nix/tests/accept.nix).jobs")
	build(t, "nix/tests/accept.nix", "-A", "jobs")
	for name, job := range jobs {
		t.Run(name, func(t *testing.T) {
			got, err := os.ReadFile(job.Out)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != job.JSON {
				t.Fatalf("the built JSON (%d bytes) differs from the passthru json (%d bytes)", len(got), len(job.JSON))
			}
			checkJobJSON(t, got)
		})
	}
}

// checkJobJSON checks what Aurora's client needs of every job document: no
// null (Aurora rejects it for every field), no bookkeeping keys, sizes in
// bytes as integers, and init processes that name their roots.
func checkJobJSON(t *testing.T, doc []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var job map[string]any
	if err := dec.Decode(&job); err != nil {
		t.Fatalf("the job is not JSON: %v", err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case nil:
			t.Errorf("%s is null", path)
		case map[string]any:
			for k, x := range v {
				if strings.HasPrefix(k, "_") || k == "nixInit" {
					t.Errorf("%s.%s is not an Aurora field", path, k)
				}
				if k == "ram" || k == "disk" || k == "log_size" {
					n, ok := x.(json.Number)
					if _, err := strconv.ParseInt(string(n), 10, 64); !ok || err != nil {
						t.Errorf("%s.%s = %v, want an integer number of bytes", path, k, x)
					}
				}
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		}
	}
	walk("job", job)
	return job
}

// process is a process of a job's JSON.
type process struct {
	Name    string `json:"name"`
	Cmdline string `json:"cmdline"`
	Final   bool   `json:"final"`
}

func processesOf(t *testing.T, doc []byte) []process {
	t.Helper()
	var job struct {
		Task struct {
			Processes []process `json:"processes"`
		} `json:"task"`
	}
	if err := json.Unmarshal(doc, &job); err != nil {
		t.Fatal(err)
	}
	return job.Task.Processes
}

// storePathRE finds store paths (up to their first '/') in a cmdline.
var storePathRE = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+`)

const defaultNixInit = "/nix/var/nix/profiles/default/bin/nix-init"

// example is one of examples/.
type example struct {
	name string
	// nixpkgs-style examples build here with the project's stand-ins.
	stubPkgs bool
}

var examples = []example{
	{name: "hello_world"},
	{name: "web_service"},
	{name: "cron_report"},
	{name: "python_hello_world", stubPkgs: true},
	{name: "prometheus", stubPkgs: true},
}

// nixArgs returns the example's file and the arguments it builds with here.
func (ex example) nixArgs(t *testing.T) (file string, args []string) {
	t.Helper()
	file = filepath.Join("examples", ex.name, "default.nix")
	if ex.stubPkgs {
		args = []string{"--arg", "pkgs", "import " + filepath.Join(repoRoot(t), "examples", "stubpkgs") + " {}"}
	}
	return file, args
}

func TestExamples(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			t.Parallel()
			file, args := ex.nixArgs(t)
			if ex.stubPkgs {
				// The plain form (with <nixpkgs>) must at least parse.
				mustNix(t, "nix-instantiate", "--parse", file)
			}

			out := build(t, append([]string{file}, args...)...)
			doc, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			var want string
			evalJSON(t, &want, append([]string{file, "-A", "json"}, args...)...)
			if string(doc) != want {
				t.Fatalf("the built JSON differs from the passthru json:\n%s\n%s", doc, want)
			}
			checkJobJSON(t, doc)

			var roots map[string]string
			evalJSON(t, &roots, append([]string{file, "-A", "roots"}, args...)...)
			checkRoots(t, processesOf(t, doc), roots)

			switch ex.name {
			case "hello_world":
				runHelloWorld(t, processesOf(t, doc))
			case "cron_report":
				runCronReport(t, doc)
			}
		})
	}
}

// checkRoots checks that each user process has a root holding its cmdline,
// that the root's closure has every store path the cmdline names, and that
// the init process of its kind asks for that root.
func checkRoots(t *testing.T, processes []process, roots map[string]string) {
	t.Helper()
	initCmdlines := map[bool]string{}
	var users []process
	for _, p := range processes {
		switch p.Name {
		case "nix_init":
			initCmdlines[false] = p.Cmdline
		case "nix_init_final":
			initCmdlines[true] = p.Cmdline
		default:
			users = append(users, p)
		}
	}
	if len(users) != len(roots) {
		t.Errorf("%d user processes but roots for %v", len(users), slices.Sorted(maps.Keys(roots)))
	}
	for _, p := range users {
		root, ok := roots[p.Name]
		if !ok {
			t.Errorf("process %s has no root", p.Name)
			continue
		}
		content, err := os.ReadFile(root)
		if err != nil {
			t.Errorf("process %s: %v", p.Name, err)
			continue
		}
		if string(content) != p.Cmdline {
			t.Errorf("root of %s holds %q, want its cmdline %q", p.Name, content, p.Cmdline)
		}
		closure := map[string]bool{}
		for _, path := range strings.Fields(mustNix(t, "nix-store", "-qR", root)) {
			closure[path] = true
		}
		for _, path := range storePathRE.FindAllString(p.Cmdline, -1) {
			if !closure[path] {
				t.Errorf("the closure of %s's root lacks %s", p.Name, path)
			}
		}
		cmd, ok := initCmdlines[p.Final]
		if !ok {
			t.Errorf("no init process for %s (final: %v)", p.Name, p.Final)
			continue
		}
		if !strings.HasPrefix(cmd, defaultNixInit+" ") {
			t.Errorf("init cmdline %q does not start with %s", cmd, defaultNixInit)
		}
		if arg := fmt.Sprintf("'%s=%s'", p.Name, root); !strings.Contains(cmd, arg) {
			t.Errorf("init cmdline %q lacks %s", cmd, arg)
		}
	}
}

// runHelloWorld runs the example's process as Thermos would: `/bin/bash -c`
// in an empty sandbox with a minimal environment, and instance 0 bound.
func runHelloWorld(t *testing.T, processes []process) {
	t.Helper()
	for _, p := range processes {
		if p.Name != "hello_world" {
			continue
		}
		sandbox := t.TempDir()
		cmd := exec.CommandContext(t.Context(), "/bin/bash", "-c", strings.ReplaceAll(p.Cmdline, "{{mesos.instance}}", "0"))
		cmd.Dir = sandbox
		cmd.Env = []string{"HOME=" + sandbox, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("running %q: %v\n%s", p.Cmdline, err, out)
		}
		want := "hello world from nix-aurora (instance 0)\nThis greeting was read from its own store path.\n"
		if string(out) != want {
			t.Errorf("hello_world printed %q, want %q", out, want)
		}
		return
	}
	t.Error("hello_world has no process named hello_world")
}

// runCronReport checks that the example is a cron job and runs its
// processes in order as Thermos would, in one sandbox, with the node's
// bindings filled in: the report must hold the heading from the store and
// the facts of the run.
func runCronReport(t *testing.T, doc []byte) {
	t.Helper()
	var job struct {
		CronSchedule        string `json:"cron_schedule"`
		CronCollisionPolicy string `json:"cron_collision_policy"`
		Service             bool   `json:"service"`
	}
	if err := json.Unmarshal(doc, &job); err != nil {
		t.Fatal(err)
	}
	if job.CronSchedule != "0 6 * * *" || job.CronCollisionPolicy != "CANCEL_NEW" || job.Service {
		t.Errorf("cron_report: schedule %q, policy %q, service %v", job.CronSchedule, job.CronCollisionPolicy, job.Service)
	}
	sandbox := t.TempDir()
	bind := strings.NewReplacer("{{thermos.task_id}}", "www-data-devel-cron_report-0-1234", "{{mesos.instance}}", "0")
	ran := 0
	for _, p := range processesOf(t, doc) {
		if p.Name != "collect" && p.Name != "report" {
			continue
		}
		ran++
		cmd := exec.CommandContext(t.Context(), "/bin/bash", "-c", bind.Replace(p.Cmdline))
		cmd.Dir = sandbox
		cmd.Env = []string{"HOME=" + sandbox, "PATH=/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("running %s %q: %v\n%s", p.Name, p.Cmdline, err, out)
		}
	}
	if ran != 2 {
		t.Fatalf("cron_report ran %d of its processes collect and report", ran)
	}
	report, err := os.ReadFile(filepath.Join(sandbox, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"Sandbox report (nix-aurora cron_report example)\n",
		"  task_id    www-data-devel-cron_report-0-1234\n",
		"  instance   0\n",
		"  sandbox    " + sandbox + "\n",
		"facts.txt",
	} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report.txt lacks %q:\n%s", want, report)
		}
	}
}

// TestTemplateFile checks what templateFile decides at evaluation: unknown
// bindings are errors, a template without bindings is used from the store
// as it is, and one with bindings becomes a call of nix-init render whose
// values come through a quoted here-document. (Rendering itself is tested
// with nix-init.)
func TestTemplateFile(t *testing.T) {
	testnix.Require(t)
	t.Parallel()
	eval := func(text string) (string, string, error) {
		expr := fmt.Sprintf(`(import ./nix).templateFile (builtins.toFile "app.conf.in" %q)`, text)
		return runNix(t, "nix-instantiate", "--eval", "--read-write-mode", "-E", expr)
	}
	_, stderr, err := eval("port {{thermos.ports[http]}} {{nope}}")
	if err == nil || !strings.Contains(stderr, "aurora: templateFile") || !strings.Contains(stderr, "unknown binding '{{nope}}'") {
		t.Fatalf("unknown binding: %v\n%s", err, stderr)
	}
	stdout, stderr, err := eval("no bindings here")
	if err != nil || !strings.HasPrefix(strings.Trim(stdout, "\"\n"), "/nix/store/") || strings.Contains(stdout, "render") {
		t.Fatalf("template without bindings: %v %s\n%s", err, stdout, stderr)
	}
	stdout, stderr, err = eval("a {{thermos.ports[http]}} b {{mesos.instance}} c {{thermos.ports[http]}}")
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{
		"/nix/var/nix/profiles/default/bin/nix-init 'render' '--template' '/nix/store/",
		"'--out' 'app.conf'",
		"'--binding' 'thermos.ports[http]' '--binding' 'mesos.instance' <<'NIX_AURORA_",
		`\n{{thermos.ports[http]}}\nNIX_AURORA_`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("fragment lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Count(stdout, "'--binding' 'thermos.ports[http]'") != 1 {
		t.Errorf("a binding used twice is passed twice:\n%s", stdout)
	}
}

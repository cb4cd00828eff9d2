// Package nixgen writes Aurora jobs as Nix expressions against the job
// library (nix/aurora.nix): constructors by name, only what differs from
// Aurora's defaults, sizes with units, order constraints with `order`, and
// cmdlines as Nix strings that evaluate to exactly the same text. It is
// what `nixaurora import` runs on a job JSON from `aurora job inspect
// --write-json`.
//
// It only writes text: it never evaluates Nix, and it never changes what a
// job means. Building its output with the library gives back the input
// job, apart from the init processes the library adds (a job that already
// holds them, such as a built one, has them dropped, since the library adds
// them again).
package nixgen

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// DefaultLibrary is the library's path in a generated file when Options
// does not name one: a checkout of nix-aurora next to the job file (a git
// submodule, say). `--arg aurora 'import PATH'` overrides it at build time.
const DefaultLibrary = "./nix-aurora/nix"

// Options say how to write the expression.
type Options struct {
	// Library is the Nix path of the job library as the generated file
	// imports it: relative to that file (./nix-aurora/nix), absolute, or a
	// NIX_PATH lookup (<nix-aurora/nix>). Empty means DefaultLibrary.
	Library string
	// Source names the input in the header comment ("config.json").
	Source string
}

// initProcesses are the processes the library adds (unless nixInit.enable
// = false): dropped from the input, as the library adds them again.
var initProcesses = []string{"nix_init", "nix_init_final"}

// Generate writes jobs as one Nix file: a function of { aurora, nixInit }
// that returns the job, or for several jobs the list of them (nix-build
// builds one JSON per job). An error names the job and field it is about.
func Generate(jobs []aurora.Job, opts Options) ([]byte, error) {
	lib, err := libraryPath(opts.Library)
	if err != nil {
		return nil, err
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("no job to write")
	}
	var exprs []string
	var notes []string
	for i, job := range jobs {
		prefix := ""
		if len(jobs) > 1 {
			prefix = fmt.Sprintf("jobs[%d].", i)
		}
		g := &gen{templates: job.Templates, prefix: prefix}
		e, err := g.job(job)
		if err != nil {
			return nil, err
		}
		exprs = append(exprs, e)
		notes = append(notes, g.notes...)
	}

	var b strings.Builder
	src := opts.Source
	if src == "" {
		src = "an Aurora job JSON"
	}
	fmt.Fprintf(&b, "# Imported by `nixaurora import` from %s.\n", oneLine(src))
	b.WriteString("#\n" +
		"# The library adds an init process (nix_init, and nix_init_final for final\n" +
		"# processes) that fetches the store paths each cmdline names: pass nixInit\n" +
		"# to configure it (e.g. { substituters = [ \"https://cache.example.org\" ]; }).\n" +
		"# Build: nixaurora build THIS_FILE (or --arg aurora 'import PATH/TO/nix-aurora/nix').\n")
	for _, n := range unique(notes) {
		b.WriteString("# " + n + "\n")
	}
	fmt.Fprintf(&b, "{ aurora ? import %s, nixInit ? { } }:\n\nwith aurora;\n", lib)
	if len(exprs) == 1 {
		b.WriteString(exprs[0])
		b.WriteString("\n")
		return []byte(b.String()), nil
	}
	b.WriteString("[\n")
	for _, e := range exprs {
		b.WriteString("  (\n" + indentLines(e, "    ") + "\n  )\n")
	}
	b.WriteString("]\n")
	return []byte(b.String()), nil
}

var pathLiteral = regexp.MustCompile(`^(/|\./|\.\./|~/)[A-Za-z0-9._+/-]*$`)
var lookupPath = regexp.MustCompile(`^<[A-Za-z0-9._+-]+(/[A-Za-z0-9._+-]+)*>$`)

// libraryPath checks that p can be written as a Nix path literal, which is
// what `import` takes without quoting; a bare relative path gets "./".
func libraryPath(p string) (string, error) {
	if p == "" {
		p = DefaultLibrary
	}
	if lookupPath.MatchString(p) {
		return p, nil
	}
	if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, ".") && !strings.HasPrefix(p, "~/") {
		p = "./" + p
	}
	if p == "./." || p == "." {
		p = "./."
	}
	for len(p) > 2 && strings.HasSuffix(p, "/") {
		p = strings.TrimSuffix(p, "/")
	}
	if p == ".." || p == "." {
		p += "/."
	}
	if !pathLiteral.MatchString(p) || strings.Contains(p, "//") {
		return "", fmt.Errorf("library path %q cannot be written as a Nix path literal (letters, digits, . _ + - and /, no //): use another path or a <NAME> lookup", p)
	}
	return p, nil
}

// gen writes one job.
type gen struct {
	templates map[string]string
	prefix    string // "jobs[i]." in a list, for errors
	notes     []string
}

// A node is a Nix expression being written.
type node interface{}

// atom is single-line Nix text that needs no parentheses in a list.
type atom string

// compound is single-line Nix text that needs parentheses in a list
// ("64 * MB", "order [ a ]").
type compound string

// indented is an indented string (between two pairs of single quotes),
// its lines as written.
type indented struct{ lines []string }

// set is `Ctor { k = v; ... }`, or a plain set when ctor is "".
type set struct {
	ctor   string
	fields []field
}

// list is `[ a b ]`.
type list []node

// concatenation is `a ++ b`.
type concatenation []node

type field struct {
	key     string // raw attribute name; quoted when it must be
	value   node
	comment string // lines written above the field
	inherit bool   // `inherit key;`
}

// constructors maps schema types to the library's constructor names.
var constructors = map[string]string{
	"Task": "Task", "Process": "Process", "Resources": "Resources", "Logger": "Logger",
	"RotatePolicy": "RotatePolicy", "UpdateConfig": "UpdateConfig",
	"QueueUpdateStrategy": "QueueUpdateStrategy", "HealthCheckConfig": "HealthCheckConfig",
	"HealthCheckerConfig": "HealthCheckerConfig", "HTTPHealthChecker": "HttpHealthChecker",
	"ShellHealthChecker": "ShellHealthChecker", "LifecycleConfig": "LifecycleConfig",
	"HTTPLifecycleConfig": "HttpLifecycleConfig", "Announcer": "Announcer", "Metadata": "Metadata",
	"PartitionPolicy": "PartitionPolicy", "ExecutorConfig": "ExecutorConfig", "Container": "Container",
	"Docker": "Docker", "Parameter": "Parameter", "SlaPolicy": "CoordinatorSlaPolicy",
}

// sizes are the byte counts, written with units.
var sizes = map[string]bool{"ram": true, "disk": true, "log_size": true}

// jobFirst are the fields a reader looks for first, in this order.
var jobFirst = []string{"cluster", "role", "environment", "name"}

func (g *gen) job(job aurora.Job) (string, error) {
	job, dropped, err := dropInit(job)
	if err != nil {
		return "", fmt.Errorf("%stask: %w", g.prefix, err)
	}
	if dropped {
		g.notes = append(g.notes, "The input's nix_init processes were dropped: the library adds its own.")
	}
	ctor := "Job"
	if job.IsService() {
		ctor = "Service"
		job.Service = nil // Service sets it
	}

	var bindings []field
	procNames := map[string]string{} // process name -> let binding
	if job.Task != nil {
		taken := map[string]bool{}
		for i, p := range job.Task.Processes {
			path := fmt.Sprintf("task.processes[%d]", i)
			v, err := g.structNode(reflect.ValueOf(p), path)
			if err != nil {
				return "", err
			}
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			id := bindingName(name, taken)
			taken[id] = true
			if _, ok := procNames[name]; !ok {
				procNames[name] = id
			}
			bindings = append(bindings, field{key: id, value: v})
		}
	}

	s, err := g.structFields(reflect.ValueOf(job), "", func(key string, fv reflect.Value, path string) (node, bool, error) {
		if key != "task" || job.Task == nil {
			return nil, false, nil
		}
		t, err := g.task(job.Task, bindings, procNames)
		return t, true, err
	})
	if err != nil {
		return "", err
	}
	// The identity first, then nixInit, then the rest in schema order.
	var first, rest []field
	for _, k := range jobFirst {
		for _, f := range s {
			if f.key == k {
				first = append(first, f)
			}
		}
	}
	for _, f := range s {
		if !slices.Contains(jobFirst, f.key) {
			rest = append(rest, f)
		}
	}
	fields := append(append(first, field{key: "nixInit", inherit: true}), rest...)
	body := render(set{ctor: ctor, fields: fields}, "")

	var b strings.Builder
	if len(bindings) > 0 {
		b.WriteString("let\n")
		for i, f := range bindings {
			if i > 0 {
				b.WriteString("\n")
			}
			b.WriteString(renderField(f, "  "))
		}
		b.WriteString("in\n")
	}
	b.WriteString(body)
	return b.String(), nil
}

// task writes the task: its processes by their let bindings, its order
// constraints with `order`.
func (g *gen) task(t *aurora.Task, bindings []field, procNames map[string]string) (node, error) {
	fs, err := g.structFields(reflect.ValueOf(*t), "task", func(key string, fv reflect.Value, path string) (node, bool, error) {
		switch key {
		case "name":
			// Aurora's default is the first process's name, as the library's.
			if t.Name != nil && len(t.Processes) > 0 && t.Processes[0].Name != nil && *t.Name == *t.Processes[0].Name {
				return nil, true, nil
			}
			return nil, false, nil
		case "processes":
			if t.Processes == nil {
				return nil, false, nil
			}
			l := list{}
			for _, b := range bindings {
				l = append(l, atom(b.key))
			}
			return l, true, nil
		case "constraints":
			if len(t.Constraints) == 0 {
				return nil, t.Constraints != nil, nil // [] is the default
			}
			var parts concatenation
			for _, c := range t.Constraints {
				var names []string
				for _, n := range c.Order {
					if id, ok := procNames[n]; ok {
						names = append(names, id)
					} else {
						names = append(names, nixString(n))
					}
				}
				parts = append(parts, compound(renderInline(list(atoms(names)), "order ")))
			}
			return parts, true, nil
		}
		return nil, false, nil
	})
	if err != nil {
		return nil, err
	}
	return set{ctor: "Task", fields: fs}, nil
}

func atoms(ss []string) []node {
	out := make([]node, len(ss))
	for i, s := range ss {
		out[i] = atom(s)
	}
	return out
}

// dropInit removes the library's init processes and the order constraints
// it adds for them ([INIT, NAME]); any other constraint naming one is an
// error, since the library would add the process again under that name.
func dropInit(job aurora.Job) (aurora.Job, bool, error) {
	t := job.Task
	if t == nil {
		return job, false, nil
	}
	isInit := func(n *string) bool { return n != nil && slices.Contains(initProcesses, *n) }
	var procs []aurora.Process
	dropped := false
	for _, p := range t.Processes {
		if isInit(p.Name) {
			dropped = true
			continue
		}
		procs = append(procs, p)
	}
	if !dropped {
		return job, false, nil
	}
	var cons []aurora.Constraint
	for i, c := range t.Constraints {
		if len(c.Order) == 2 && slices.Contains(initProcesses, c.Order[0]) {
			continue
		}
		for _, n := range c.Order {
			if slices.Contains(initProcesses, n) {
				return job, false, fmt.Errorf("constraints[%d]: order %q names the init process %s, which the library adds itself and orders before each process: remove it from the order, or rename the process", i, c.Order, n)
			}
		}
		cons = append(cons, c)
	}
	nt := *t
	nt.Processes = procs
	nt.Constraints = cons
	if nt.Processes == nil {
		nt.Processes = []aurora.Process{}
	}
	if t.Constraints != nil && nt.Constraints == nil {
		nt.Constraints = []aurora.Constraint{}
	}
	job.Task = &nt
	return job, true, nil
}

// special lets a caller write a field itself: it returns the node, whether
// it handled the field, and an error. A handled field with a nil node is
// left out.
type special func(key string, fv reflect.Value, path string) (node, bool, error)

// structNode writes a schema struct with its constructor.
func (g *gen) structNode(v reflect.Value, path string) (node, error) {
	fs, err := g.structFields(v, path, nil)
	if err != nil {
		return nil, err
	}
	name := v.Type().Name()
	ctor, ok := constructors[name]
	if !ok {
		return nil, fmt.Errorf("%s%s: no constructor for %s", g.prefix, path, name)
	}
	return set{ctor: ctor, fields: fs}, nil
}

// structFields writes the fields of the struct v that differ from Aurora's
// defaults, in schema order.
func (g *gen) structFields(v reflect.Value, path string, sp special) ([]field, error) {
	t := v.Type()
	var out []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if key == "" || key == "-" {
			continue
		}
		fv := v.Field(i)
		p := joinPath(path, key)
		if tmpl, ok := g.templates[p]; ok {
			if fv.IsNil() {
				return nil, fmt.Errorf("%s%s: %q: the library takes the value itself, not a binding, and this one cannot be computed from the job: write the value", g.prefix, p, tmpl)
			}
			g.notes = append(g.notes, fmt.Sprintf("%s was %q in the JSON: the library takes the value itself, written here as Aurora's client computes it.", g.prefix+p, tmpl))
		}
		if sp != nil {
			n, handled, err := sp(key, fv, p)
			if err != nil {
				return nil, err
			}
			if handled {
				if n != nil {
					out = append(out, field{key: key, value: n})
				}
				continue
			}
		}
		if fv.IsNil() {
			continue
		}
		n, err := g.value(fv, key, p)
		if err != nil {
			return nil, err
		}
		if def := sf.Tag.Get("default"); def != "" {
			dv := reflect.New(fv.Type())
			if err := json.Unmarshal([]byte(def), dv.Interface()); err != nil {
				return nil, fmt.Errorf("%s%s: default %s: %w", g.prefix, p, def, err)
			}
			dn, err := g.value(dv.Elem(), key, p)
			if err != nil {
				return nil, err
			}
			if render(n, "") == render(dn, "") {
				continue
			}
		}
		if key == "portmap" && isDefaultPortmap(v) {
			continue
		}
		f := field{key: key, value: n}
		if key == "cmdline" {
			f.comment = cmdlineComment(fv.Elem().String())
		}
		out = append(out, f)
	}
	// A process reads best by its name first.
	if t.Name() == "Process" {
		slices.SortStableFunc(out, func(a, b field) int {
			if a.key == "name" && b.key != "name" {
				return -1
			}
			if b.key == "name" && a.key != "name" {
				return 1
			}
			return 0
		})
	}
	return out, nil
}

// isDefaultPortmap reports whether an Announcer's portmap is what the
// library writes when it is absent: {aurora = primary_port}, and Aurora's
// own default {aurora = "{{primary_port}}"}, which means the same.
func isDefaultPortmap(announcer reflect.Value) bool {
	a, ok := announcer.Interface().(aurora.Announcer)
	if !ok || len(a.Portmap) != 1 {
		return false
	}
	primary := "http"
	if a.PrimaryPort != nil {
		primary = *a.PrimaryPort
	}
	v, ok := a.Portmap["aurora"]
	return ok && (v == primary || v == "{{primary_port}}")
}

// value writes one attribute's value.
func (g *gen) value(fv reflect.Value, key, path string) (node, error) {
	switch fv.Kind() {
	case reflect.Pointer:
		e := fv.Elem()
		switch e.Kind() {
		case reflect.String:
			return stringNode(e.String()), nil
		case reflect.Bool:
			return atom(strconv.FormatBool(e.Bool())), nil
		case reflect.Int64:
			if sizes[key] {
				return sizeNode(e.Int()), nil
			}
			return intNode(e.Int()), nil
		case reflect.Float64:
			return floatNode(e.Float()), nil
		case reflect.Struct:
			return g.structNode(e, path)
		}
	case reflect.Map:
		keys := make([]string, 0, fv.Len())
		for _, k := range fv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		s := set{}
		for _, k := range keys {
			s.fields = append(s.fields, field{key: k, value: stringNode(fv.MapIndex(reflect.ValueOf(k)).String())})
		}
		return s, nil
	case reflect.Slice:
		l := list{}
		for i := 0; i < fv.Len(); i++ {
			ev := fv.Index(i)
			if ev.Kind() == reflect.String {
				l = append(l, stringNode(ev.String()))
				continue
			}
			n, err := g.structNode(ev, fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			l = append(l, n)
		}
		return l, nil
	}
	return nil, fmt.Errorf("%s%s: cannot write a %s", g.prefix, path, fv.Type())
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func intNode(n int64) node {
	if n < 0 {
		return compound(strconv.FormatInt(n, 10))
	}
	return atom(strconv.FormatInt(n, 10))
}

// sizeNode writes bytes with the largest unit that divides them exactly.
func sizeNode(n int64) node {
	for _, u := range []struct {
		name string
		size int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10}} {
		if n > 0 && n%u.size == 0 {
			return compound(fmt.Sprintf("%d * %s", n/u.size, u.name))
		}
	}
	return intNode(n)
}

// floatNode writes a float as a Nix float literal that reads back as the
// same double: Nix's lexer wants digits on both sides of the point and no
// bare exponent.
func floatNode(f float64) node {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return compound("(1.0e308 * 10.0)") // cannot come from JSON
	}
	s := strconv.FormatFloat(math.Abs(f), 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	if f < 0 || (f == 0 && math.Signbit(f)) {
		return compound("-" + s)
	}
	return atom(s)
}

// fetchers are commands that fetch software at run time, which is what a
// Nix store path replaces.
var fetchers = regexp.MustCompile(`(?:^|[\s;&|(` + "`" + `/])(curl|wget|packer|hdfs|gsutil|scp|rsync|fetch|hadoop\s+fs|aws\s+s3|git\s+(?:clone|fetch|pull)|pip3?\s+install|npm\s+install|apt-get\s+install|yum\s+install)(?:$|[\s;&|)])`)

// storePaths are store paths written in a cmdline as plain text.
var storePaths = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+`)

// cmdlineComment is the comment above a cmdline: what Nix should replace
// in it, "" when nothing.
func cmdlineComment(cmdline string) string {
	var lines []string
	if c := fetchComment(cmdline); c != "" {
		lines = append(lines, c)
	}
	if paths := unique(storePaths.FindAllString(cmdline, -1)); len(paths) > 0 {
		names := make([]string, len(paths))
		for i, p := range paths {
			names[i] = p[len("/nix/store/")+33:]
		}
		lines = append(lines, fmt.Sprintf("This cmdline names store paths as plain text (%s): nix-init fetches only\n"+
			"the paths a string's context holds, so interpolate the package instead (\"${pkgs.foo}/bin/foo\").",
			strings.Join(unique(names), ", ")))
	}
	return strings.Join(lines, "\n")
}

// fetchComment is the comment about a cmdline that fetches software, ""
// for any other.
func fetchComment(cmdline string) string {
	var found []string
	for _, m := range fetchers.FindAllStringSubmatch(cmdline, -1) {
		name := strings.Join(strings.Fields(m[1]), " ")
		if !slices.Contains(found, name) {
			found = append(found, name)
		}
	}
	if len(found) == 0 {
		return ""
	}
	return fmt.Sprintf("This cmdline fetches software at run time (%s): replace it with a Nix package, e.g. \"${pkgs.foo}/bin/foo\".", strings.Join(found, ", "))
}

func unique(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", " ", "\r", " ").Replace(s)
}

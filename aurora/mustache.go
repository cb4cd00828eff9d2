package aurora

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nix-aurora/nix-aurora/mustache"
)

// This file models a job as mustache values and runs the checks Aurora
// makes on its interpolated strings; the rules are in the package doc.

// build turns rv (a schema value) into mustache values, with Aurora's
// defaults filled in and the job's templates in place of the attributes
// they were written for.
func build(rv reflect.Value, path, rel string, parent *mustache.Value, defaulted bool, templates map[string]string) *mustache.Value {
	switch rv.Kind() {
	case reflect.Pointer:
		return build(rv.Elem(), path, rel, parent, defaulted, templates)
	case reflect.Struct:
		n := &mustache.Value{Kind: mustache.Struct, Type: schemaName(rv.Type()), Fields: map[string]*mustache.Value{},
			Parent: parent, Path: path, Defaulted: defaulted}
		for _, f := range fieldsOf(rv.Type()) {
			fv := rv.Field(f.index)
			fpath, frel := join(path, f.name), join(rel, f.name)
			if t, ok := templates[frel]; ok && !defaulted {
				n.Fields[f.name] = &mustache.Value{Kind: mustache.Scalar, Text: t, Template: true,
					Coerce: coercer(fv.Type().Elem().Kind()), Parent: n, Path: fpath}
				continue
			}
			switch {
			case !fv.IsNil():
				n.Fields[f.name] = build(fv, fpath, frel, n, defaulted, templates)
			case f.def != "":
				n.Fields[f.name] = build(defaultProto(fv.Type(), f.def), fpath, frel, n, true, templates)
			}
		}
		n.Names = sortedNames(n.Fields)
		return n
	case reflect.Slice:
		n := &mustache.Value{Kind: mustache.List, Parent: parent, Path: path, Defaulted: defaulted}
		for i := 0; i < rv.Len(); i++ {
			n.Elems = append(n.Elems, build(rv.Index(i), index(path, i), index(rel, i), n, defaulted, templates))
		}
		return n
	case reflect.Map:
		n := &mustache.Value{Kind: mustache.Map, Fields: map[string]*mustache.Value{}, Parent: parent, Path: path, Defaulted: defaulted}
		for _, k := range rv.MapKeys() {
			n.Names = append(n.Names, k.String())
		}
		sort.Strings(n.Names)
		for _, k := range n.Names {
			kpath := mapKey(path, k)
			n.Fields[k] = build(rv.MapIndex(reflect.ValueOf(k)), kpath, mapKey(rel, k), n, defaulted, templates)
			n.Keys = append(n.Keys, &mustache.Value{Kind: mustache.Scalar, Text: k, Template: true, Parent: n,
				Path: kpath, Defaulted: defaulted})
		}
		return n
	case reflect.String:
		return &mustache.Value{Kind: mustache.Scalar, Text: rv.String(), Template: true, Parent: parent, Path: path, Defaulted: defaulted}
	case reflect.Int64:
		return &mustache.Value{Kind: mustache.Scalar, Text: strconv.FormatInt(rv.Int(), 10), Parent: parent, Path: path, Defaulted: defaulted}
	case reflect.Float64:
		return &mustache.Value{Kind: mustache.Scalar, Text: mustache.FormatFloat(rv.Float()), Parent: parent, Path: path, Defaulted: defaulted}
	case reflect.Bool:
		return &mustache.Value{Kind: mustache.Scalar, Text: pyBool(rv.Bool()), Parent: parent, Path: path, Defaulted: defaulted}
	}
	panic(fmt.Sprintf("aurora: cannot model %s", rv.Type()))
}

func sortedNames(m map[string]*mustache.Value) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Values returns the job as the values Aurora interpolates: Aurora's
// defaults filled in, and its Templates in place of the attributes they
// were written for. Paths are relative to the job.
func (j Job) Values() *mustache.Value {
	return build(reflect.ValueOf(&j).Elem(), "", "", nil, false, j.Templates)
}

// coercer is pystachio's coercion of an interpolated template for an
// attribute of kind k; the result is Python's str() of the value.
func coercer(k reflect.Kind) func(string) (string, error) {
	return func(s string) (string, error) {
		text, err := coerceText(k, s)
		if err != nil {
			return "", fmt.Errorf("Unable to interpolate: %w", err)
		}
		if k == reflect.Float64 {
			f, _ := strconv.ParseFloat(text, 64)
			text = mustache.FormatFloat(f)
		}
		return text, nil
	}
}

// The values convert binds to check a task (config/thrift.py, and
// ThermosTaskValidator.assert_all_refs_bound).
var (
	checkInstance = 31337
	checkHostname = ""
	checkTaskID   = "dummy_task_id"
)

// analysis is a job modelled as values, with the interpolators of the
// stages at which Aurora looks at them.
type analysis struct {
	root *mustache.Value
	// client: AuroraConfig.job and convert (role, environment, name, the
	// job's other attributes).
	client *mustache.Interpolator
	// named: the task as convert checks its names and plan, with
	// mesos.instance and mesos.hostname bound.
	named *mustache.Interpolator
	// bound: the task with the node's bindings faked, ports being the ones
	// the task asks for (assert_all_refs_bound).
	bound *mustache.Interpolator
	ports map[string]int
}

func analyze(j *Job, prefix string) *analysis {
	a := &analysis{root: build(reflect.ValueOf(j).Elem(), prefix, "", nil, false, j.Templates)}
	a.client = mustache.New()
	a.named = a.client.On(mustache.Node{Instance: &checkInstance, Hostname: &checkHostname})
	a.ports = map[string]int{}
	a.bound = a.client.On(mustache.Node{Instance: &checkInstance, Hostname: &checkHostname, TaskID: &checkTaskID, Ports: func(name string) (int, error) {
		if p, ok := a.ports[name]; ok {
			return p, nil
		}
		return 0, mustache.ErrUnbound
	}})
	if task := a.root.Fields["task"]; task != nil {
		task.Walk(func(n *mustache.Value) {
			if n.Kind != mustache.Scalar || !n.Template {
				return
			}
			for _, r := range a.named.Value(n).Unbound {
				if r.HasPrefix("thermos", "ports") && r[2].Index {
					if _, ok := a.ports[r[2].Name]; !ok {
						a.ports[r[2].Name] = 30000 + len(a.ports)
					}
				}
			}
		})
	}
	return a
}

// str is the client's interpolation of attribute attr of the struct s
// ("" when absent).
func (a *analysis) str(s *mustache.Value, attr string) string {
	if s == nil || s.Kind != mustache.Struct {
		return ""
	}
	n := s.Fields[attr]
	if n == nil || n.Kind != mustache.Scalar {
		return ""
	}
	return a.client.Value(n).Out
}

// inTask reports whether n belongs to the job's task.
func (a *analysis) inTask(n *mustache.Value) bool {
	task := a.root.Fields["task"]
	for p := n; p != nil; p = p.Parent {
		if p == task {
			return true
		}
	}
	return false
}

// checkLeaf returns why Aurora (client or executor) would refuse the
// scalar n, with Aurora's messages.
func (a *analysis) checkLeaf(n *mustache.Value) []string {
	res := a.client.Value(n)
	msgs := append([]string(nil), res.Errs...)
	if !a.inTask(n) {
		// convert: everything but what the node binds must be bound.
		var unbound []string
		for _, r := range res.Unbound {
			if !r.IsNode() && !r.HasPrefix("thermos", "ports") {
				unbound = append(unbound, r.String())
			}
		}
		if len(unbound) > 0 {
			msgs = append(msgs, "Config contains unbound variables: "+strings.Join(unbound, " "))
		} else if n.Coerce != nil && len(res.Unbound) > 0 {
			msgs = append(msgs, notOfType(n))
		}
		return msgs
	}
	// PortExtractor, then ThermosTaskValidator.assert_all_refs_bound.
	for _, r := range a.named.Value(n).Unbound {
		if r.HasPrefix("thermos", "ports") && !r[2].Index {
			msgs = append(msgs, fmt.Sprintf(
				"Bad port specification %q (should be of form \"thermos.ports[name]\"", r.Address()))
			return msgs
		}
	}
	if n.Coerce != nil && len(a.named.Value(n).Unbound) > 0 {
		// The task's typecheck, before its refs are checked.
		return append(msgs, "Failed to fully evaluate task: "+notOfType(n))
	}
	bound := a.bound.Value(n)
	for _, m := range bound.Errs {
		if !slices.Contains(msgs, m) {
			msgs = append(msgs, m)
		}
	}
	if len(bound.Unbound) > 0 {
		left := make([]string, len(bound.Unbound))
		for i, r := range bound.Unbound {
			left[i] = r.String()
		}
		msgs = append(msgs, "Unexpected unbound refs: "+strings.Join(left, " ")+
			". Make sure you are not nesting template variables.")
	}
	return msgs
}

// notOfType is pystachio's type check of a template still unbound.
func notOfType(n *mustache.Value) string {
	what := "an integer"
	switch {
	case isFloatAttr(n):
		what = "a float"
	case isBoolAttr(n):
		what = "a boolean"
	}
	return fmt.Sprintf("u%s not %s", pyQuote(n.Text), what)
}

func isFloatAttr(n *mustache.Value) bool {
	_, err := n.Coerce("0.5")
	return err == nil
}

func isBoolAttr(n *mustache.Value) bool {
	_, err := n.Coerce("true")
	return err == nil
}

// pyQuote is Python's repr of a string (for the printable ones).
func pyQuote(s string) string {
	if strings.Contains(s, "'") && !strings.Contains(s, `"`) {
		return `"` + s + `"`
	}
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// resolveTemplates sets each attribute written as a template to the value
// the client coerces it to, where the client can compute it.
func (j *Job) resolveTemplates() {
	if len(j.Templates) == 0 {
		return
	}
	a := analyze(j, "")
	paths := make([]string, 0, len(j.Templates))
	for p := range j.Templates {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, rel := range paths {
		n := a.root
		for _, step := range splitPath(rel) {
			if n == nil {
				break
			}
			n = mustache.Lookup(n, mustache.Ref{step})
		}
		if n == nil || n.Kind != mustache.Scalar {
			continue
		}
		interp := a.client
		if a.inTask(n) {
			interp = a.named
		}
		res := interp.Value(n)
		if len(res.Unbound) > 0 || len(res.Errs) > 0 {
			continue
		}
		setPath(reflect.ValueOf(j).Elem(), splitPath(rel), res.Out)
	}
}

// splitPath splits a path relative to a job ("task.processes[0].daemon")
// into steps.
func splitPath(rel string) []mustache.Step {
	var steps []mustache.Step
	for _, part := range strings.Split(rel, ".") {
		name, rest, _ := strings.Cut(part, "[")
		steps = append(steps, mustache.Step{Name: name})
		for rest != "" {
			var idx string
			idx, rest, _ = strings.Cut(rest, "]")
			steps = append(steps, mustache.Step{Name: idx, Index: true})
			rest = strings.TrimPrefix(rest, "[")
		}
	}
	return steps
}

// setPath sets the scalar at steps below the struct rv to text (Python's
// str() of a coerced value).
func setPath(rv reflect.Value, steps []mustache.Step, text string) {
	for _, s := range steps {
		if rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				rv.Set(reflect.New(rv.Type().Elem()))
			}
			rv = rv.Elem()
		}
		switch {
		case rv.Kind() == reflect.Struct && !s.Index:
			found := false
			for _, f := range fieldsOf(rv.Type()) {
				if f.name == s.Name {
					rv, found = rv.Field(f.index), true
					break
				}
			}
			if !found {
				return
			}
		case rv.Kind() == reflect.Slice && s.Index:
			i, err := strconv.Atoi(s.Name)
			if err != nil || i < 0 || i >= rv.Len() {
				return
			}
			rv = rv.Index(i)
		default:
			return
		}
	}
	if rv.Kind() != reflect.Pointer {
		return
	}
	v := reflect.New(rv.Type().Elem())
	switch v.Elem().Kind() {
	case reflect.Bool:
		v.Elem().SetBool(text == "True")
	case reflect.Int64:
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return
		}
		v.Elem().SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return
		}
		v.Elem().SetFloat(f)
	default:
		return
	}
	rv.Set(v)
}

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// pyRepr is Python's repr(float), as messages formatted with %r print it.
func pyRepr(f float64) string { return mustache.ReprFloat(f) }

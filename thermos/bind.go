package thermos

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// This file expands {{mustache}} references in cmdlines as the job would
// see them on a node: the Aurora client resolves the job's own attributes
// (pystachio scoping: the innermost enclosing struct first, so {{name}} in
// a cmdline is the process's name), and Thermos binds {{thermos.*}} and the
// executor {{mesos.*}}. Every reference must resolve.

// bindings are what the node provides.
type bindings struct {
	taskID   string
	hostname string
	instance int
	ports    *portAllocator
}

// value is one attribute of the job (defaults filled in).
type value struct {
	fields   map[string]*value // struct attributes, map entries
	isStruct bool
	elems    []*value // list
	isList   bool
	text     string // scalar: Python's str() of it
	isString bool
	isScalar bool
	parent   *value
}

// model turns a job (with its defaults) into values, following the JSON
// names of its attributes.
func model(rv reflect.Value, parent *value) *value {
	switch rv.Kind() {
	case reflect.Pointer:
		return model(rv.Elem(), parent)
	case reflect.Struct:
		v := &value{fields: map[string]*value{}, isStruct: true, parent: parent}
		t := rv.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fv := rv.Field(i)
			if fv.IsNil() {
				continue
			}
			v.fields[name] = model(fv, v)
		}
		return v
	case reflect.Slice:
		v := &value{isList: true, parent: parent}
		for i := 0; i < rv.Len(); i++ {
			v.elems = append(v.elems, model(rv.Index(i), v))
		}
		return v
	case reflect.Map:
		v := &value{fields: map[string]*value{}, parent: parent}
		for _, k := range rv.MapKeys() {
			v.fields[k.String()] = model(rv.MapIndex(k), v)
		}
		return v
	case reflect.String:
		return &value{text: rv.String(), isString: true, isScalar: true, parent: parent}
	case reflect.Int64, reflect.Int:
		return &value{text: strconv.FormatInt(rv.Int(), 10), isScalar: true, parent: parent}
	case reflect.Float64:
		return &value{text: pyFloat(rv.Float()), isScalar: true, parent: parent}
	case reflect.Bool:
		s := "False"
		if rv.Bool() {
			s = "True"
		}
		return &value{text: s, isScalar: true, parent: parent}
	}
	panic(fmt.Sprintf("thermos: cannot model %s", rv.Type()))
}

// scopes are the structs enclosing v, innermost first.
func (v *value) scopes() []*value {
	var s []*value
	for p := v.parent; p != nil; p = p.parent {
		if p.isStruct {
			s = append(s, p)
		}
	}
	return s
}

// comp is one step of a reference: .name or [key].
type comp struct {
	name  string
	index bool
}

// ref is a parsed reference address (pystachio's Ref).
type ref []comp

func (r ref) is(parts ...string) bool {
	if len(r) != len(parts) {
		return false
	}
	for i := range r {
		if r[i].index || r[i].name != parts[i] {
			return false
		}
	}
	return true
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }

// parseRef parses an address as pystachio's Ref.from_address.
func parseRef(addr string) (ref, error) {
	s := addr
	if s == "" {
		return nil, fmt.Errorf("empty reference {{}}")
	}
	if !strings.HasPrefix(s, "[") && !strings.HasPrefix(s, ".") {
		s = "." + s
	}
	rs := []rune(s)
	var r ref
	for i := 0; i < len(rs); {
		switch rs[i] {
		case '.':
			j := i + 1
			if j < len(rs) && isWordRune(rs[j]) && !unicode.IsDigit(rs[j]) {
				for j++; j < len(rs) && isWordRune(rs[j]); j++ {
				}
				r = append(r, comp{name: string(rs[i+1 : j])})
				i = j
				continue
			}
		case '[':
			j := i + 1
			for j < len(rs) && (isWordRune(rs[j]) || rs[j] == '-' || rs[j] == '.' || rs[j] == '/') {
				j++
			}
			if j > i+1 && j < len(rs) && rs[j] == ']' {
				r = append(r, comp{name: string(rs[i+1 : j]), index: true})
				i = j + 1
				continue
			}
		}
		return nil, fmt.Errorf("badly formed reference {{%s}}", addr)
	}
	return r, nil
}

// lookup follows r from v (nil when a step misses).
func lookup(v *value, r ref) *value {
	for _, c := range r {
		switch {
		case v.isStruct:
			if c.index {
				return nil
			}
			v = v.fields[c.name]
		case v.isList:
			if !c.index {
				return nil
			}
			i, err := strconv.Atoi(c.name)
			if err != nil {
				return nil
			}
			if i < 0 {
				i += len(v.elems)
			}
			if i < 0 || i >= len(v.elems) {
				return nil
			}
			v = v.elems[i]
		case v.fields != nil: // a map
			if !c.index {
				return nil
			}
			v = v.fields[c.name]
		default:
			return nil
		}
		if v == nil {
			return nil
		}
	}
	return v
}

// tag is one {{...}} in a string.
type tag struct {
	start, end int
	addr       string
}

// scanTags finds {{...}} as pystachio's `{{(&)?([^{}]+?)\1?}}`.
func scanTags(s string) []tag {
	var tags []tag
	for i := 0; i+1 < len(s); {
		if s[i] != '{' || s[i+1] != '{' {
			i++
			continue
		}
		j := i + 2
		for j < len(s) && s[j] != '{' && s[j] != '}' {
			j++
		}
		if j == i+2 || j+1 >= len(s) || s[j] != '}' || s[j+1] != '}' {
			i++
			continue
		}
		tags = append(tags, tag{start: i, end: j + 2, addr: s[i+2 : j]})
		i = j + 2
	}
	return tags
}

// maxRounds is pystachio's MAX_ITERATIONS; maxLength bounds a string that
// grows at each round.
const (
	maxRounds = 100
	maxLength = 1 << 20
)

type interpolator struct {
	b      *bindings
	active map[*value]bool
}

// interpolate expands every reference in s, resolved in scopes.
func (in *interpolator) interpolate(s string, scopes []*value) (string, error) {
	stream := s
	for round := 0; ; round++ {
		tags := scanTags(stream)
		if len(tags) == 0 {
			return stream, nil
		}
		if round == maxRounds || len(stream) > maxLength {
			return "", fmt.Errorf("cannot interpolate %q: maximum replacements reached", s)
		}
		var b strings.Builder
		pos := 0
		for _, t := range tags {
			b.WriteString(stream[pos:t.start])
			pos = t.end
			if strings.HasPrefix(t.addr, "&") {
				return "", fmt.Errorf("unknown binding {{%s}}: escaped references are not bound on a node", t.addr)
			}
			r, err := parseRef(t.addr)
			if err != nil {
				return "", err
			}
			v, err := in.find(r, scopes)
			if errors.Is(err, errUnknown) {
				return "", fmt.Errorf("unknown binding {{%s}}: not an attribute of the process, the task or the job, "+
					"nor one a node binds ({{thermos.ports[NAME]}}, {{thermos.task_id}}, {{thermos.user}}, "+
					"{{mesos.instance}}, {{mesos.hostname}})", t.addr)
			}
			if err != nil {
				return "", fmt.Errorf("{{%s}}: %w", t.addr, err)
			}
			b.WriteString(v)
		}
		b.WriteString(stream[pos:])
		stream = b.String()
	}
}

// ErrBinding is wrapped by the error Run returns when a cmdline holds a
// reference that cannot be bound; nothing has run then.
var ErrBinding = errors.New("cannot bind the cmdlines")

// errUnknown is a reference that is neither an attribute nor a binding of
// the node.
var errUnknown = errors.New("unknown binding")

func (in *interpolator) find(r ref, scopes []*value) (string, error) {
	for _, s := range scopes {
		v := lookup(s, r)
		if v == nil {
			continue
		}
		if !v.isScalar {
			return "", fmt.Errorf("refers to a struct, list or map, not to a value")
		}
		if !v.isString {
			return v.text, nil
		}
		if in.active[v] {
			return "", fmt.Errorf("refers to itself")
		}
		in.active[v] = true
		defer delete(in.active, v)
		return in.interpolate(v.text, v.scopes())
	}
	switch {
	case r.is("thermos", "task_id"):
		return in.b.taskID, nil
	case r.is("thermos", "user"), r.is("mesos", "role"):
		return "{{role}}", nil // the Aurora client binds it to the job's role
	case r.is("mesos", "cluster"):
		return "{{cluster}}", nil
	case r.is("mesos", "instance"):
		return strconv.Itoa(in.b.instance), nil
	case r.is("mesos", "hostname"):
		return in.b.hostname, nil
	case len(r) == 3 && r[0] == comp{name: "thermos"} && r[1] == comp{name: "ports"} && r[2].index:
		port, err := in.b.ports.get(r[2].name)
		if err != nil {
			return "", err
		}
		return strconv.Itoa(port), nil
	}
	return "", errUnknown
}

// bindTask returns the job's task (with Aurora's defaults) with its
// references expanded where Thermos expands them before it plans: the
// processes' names and cmdlines, and the order constraints.
func bindTask(job aurora.Job, b *bindings) (*aurora.Task, error) {
	j := job.Defaults()
	if j.Task == nil || len(j.Task.Processes) == 0 {
		return nil, errors.New("invalid task: the job has no processes")
	}
	root := model(reflect.ValueOf(&j).Elem(), nil)
	task := root.fields["task"]
	in := &interpolator{b: b, active: map[*value]bool{}}
	var problems []string
	bind := func(v *value, what string) *string {
		if v == nil || !v.isString {
			return nil
		}
		s, err := in.interpolate(v.text, v.scopes())
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q: %v", what, v.text, err))
			return nil
		}
		return &s
	}
	bound := *j.Task
	bound.Processes = make([]aurora.Process, len(j.Task.Processes))
	for i, pv := range task.fields["processes"].elems {
		p := j.Task.Processes[i]
		label := fmt.Sprintf("process %d", i)
		if p.Name != nil {
			label = "process " + *p.Name
		}
		p.Name = bind(pv.fields["name"], label+": name")
		p.Cmdline = bind(pv.fields["cmdline"], label+": cmdline")
		bound.Processes[i] = p
	}
	if cs := task.fields["constraints"]; cs != nil {
		bound.Constraints = make([]aurora.Constraint, len(cs.elems))
		for i, cv := range cs.elems {
			if ov := cv.fields["order"]; ov != nil {
				order := []string{}
				for k, nv := range ov.elems {
					if s := bind(nv, fmt.Sprintf("constraint %d: order[%d]", i, k)); s != nil {
						order = append(order, *s)
					}
				}
				bound.Constraints[i].Order = order
			}
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w:\n  %s", ErrBinding, strings.Join(problems, "\n  "))
	}
	return &bound, nil
}

// portAllocator gives each port name a free local TCP port, once per run.
// The listeners stay open until close, so that two names never get the
// same port.
type portAllocator struct {
	ports     map[string]int
	listeners []net.Listener
}

func newPortAllocator() *portAllocator { return &portAllocator{ports: map[string]int{}} }

func (a *portAllocator) get(name string) (int, error) {
	if p, ok := a.ports[name]; ok {
		return p, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("allocate port %s: %w", name, err)
	}
	a.listeners = append(a.listeners, l)
	a.ports[name] = l.Addr().(*net.TCPAddr).Port
	return a.ports[name], nil
}

func (a *portAllocator) close() {
	for _, l := range a.listeners {
		l.Close()
	}
	a.listeners = nil
}

// pyFloat formats f as Python's str(float): 1.0, 0.5, 1e-05, 1e+16.
func pyFloat(f float64) string {
	if f == 0 {
		if 1/f < 0 {
			return "-0.0"
		}
		return "0.0"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}

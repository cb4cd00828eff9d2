// Package mustache interpolates {{...}} templates the way pystachio 0.8.5
// does for Apache Aurora 0.22, whose client runs on Python 2.7: a reference
// ({{task.name}}, {{processes[0].name}}, {{announce.portmap[aurora]}}) is
// resolved against the structs enclosing the string, innermost first, then
// against bound environments; a resolved string is pasted in and the
// result scanned again, at most 100 rounds; {{&x}} is kept as {{x}} by one
// interpolation.
//
// Aurora interpolates a job twice on the client (AuroraConfig.job, then
// convert) and once more on the node, where Thermos and the executor bind
// {{thermos.ports[NAME]}}, {{thermos.task_id}}, {{mesos.instance}} and
// {{mesos.hostname}}. An Interpolator reproduces the client's two passes;
// one made WithNode adds the node's. The client's standard bindings
// ({{mesos.role}} and {{thermos.user}} are {{role}}, {{mesos.cluster}} is
// {{cluster}}) always apply.
//
// Lenient interpolation (the default) leaves what it cannot resolve in
// place and reports it, as pystachio does; Strict makes anything unresolved
// an error, as a node that must run the result needs.
//
// What this package must never do: evaluate anything but references, or
// paste a struct, list or map (pystachio would paste its Python repr; that
// is refused here).
package mustache

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kind is the shape of a Value.
type Kind uint8

const (
	Struct Kind = iota
	List
	Map
	Scalar
)

// Value is one value of a configuration as pystachio sees it, defaults
// included.
type Value struct {
	Kind Kind
	// Type is pystachio's class name of a Struct, used in messages.
	Type string
	// Fields are a Struct's attributes (present or defaulted) and a Map's
	// entries.
	Fields map[string]*Value
	// Names are the keys of Fields in the order Walk visits them.
	Names []string
	// Keys are a Map's keys as String values, parallel to Names.
	Keys []*Value
	// Elems are a List's elements.
	Elems []*Value
	// Text is a Scalar: Python's str() of it, or the string written.
	Text string
	// Template is set for a Scalar whose Text is interpolated: a String, or
	// a string written for another type (priority: "{{instances}}").
	Template bool
	// Coerce, for a Template that is not a String, turns the interpolated
	// text into Python's str() of the value pystachio coerces it to.
	Coerce func(string) (string, error)
	// Parent is the enclosing value; Path locates the value for messages.
	Parent *Value
	Path   string
	// Defaulted is set for a value supplied by a default.
	Defaulted bool
}

// scopes are the structs enclosing v, innermost first.
func (v *Value) scopes() []*Value {
	var s []*Value
	for p := v.Parent; p != nil; p = p.Parent {
		if p.Kind == Struct {
			s = append(s, p)
		}
	}
	return s
}

// Walk calls fn for v and every value below it, map keys included.
func (v *Value) Walk(fn func(*Value)) {
	fn(v)
	switch v.Kind {
	case Struct:
		for _, k := range v.Names {
			v.Fields[k].Walk(fn)
		}
	case List:
		for _, e := range v.Elems {
			e.Walk(fn)
		}
	case Map:
		for i, k := range v.Names {
			v.Fields[k].Walk(fn)
			v.Keys[i].Walk(fn)
		}
	}
}

// Step is one component of a reference: .Name, or [Name] when Index.
type Step struct {
	Name  string
	Index bool
}

// Ref is a parsed reference, as pystachio's Ref.
type Ref []Step

// Address is the reference without its braces: task.processes[0].name.
func (r Ref) Address() string {
	var b strings.Builder
	for i, c := range r {
		switch {
		case c.Index:
			b.WriteString("[" + c.Name + "]")
		case i == 0:
			b.WriteString(c.Name)
		default:
			b.WriteString("." + c.Name)
		}
	}
	return b.String()
}

func (r Ref) String() string { return "{{" + r.Address() + "}}" }

// Is reports whether r is exactly the given dereferences (no index).
func (r Ref) Is(names ...string) bool {
	if len(r) != len(names) {
		return false
	}
	for i := range r {
		if r[i].Index || r[i].Name != names[i] {
			return false
		}
	}
	return true
}

// HasPrefix reports whether r starts with the dereferences names and has
// more steps after them (pystachio's Ref.subscope).
func (r Ref) HasPrefix(names ...string) bool {
	return len(r) > len(names) && r[:len(names)].Is(names...)
}

// Port is NAME of {{thermos.ports[NAME]}}, or "" for any other reference.
func (r Ref) Port() string {
	if len(r) == 3 && r.HasPrefix("thermos", "ports") && r[2].Index {
		return r[2].Name
	}
	return ""
}

// IsNode reports whether the node binds r: {{thermos.ports[NAME]}},
// {{thermos.task_id}}, {{mesos.instance}}, {{mesos.hostname}}.
func (r Ref) IsNode() bool {
	return r.Port() != "" || r.Is("thermos", "task_id") || r.Is("mesos", "instance") || r.Is("mesos", "hostname")
}

// isWordByte is \w of Python 2.7's re without re.UNICODE: ASCII only.
func isWordByte(c byte) bool {
	return c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// ParseRef parses an address as pystachio's Ref.from_address.
func ParseRef(addr string) (Ref, error) {
	s := addr
	if s == "" {
		return nil, errors.New("Invalid address: {{}}")
	}
	if s[0] != '[' && s[0] != '.' {
		if c := s[0]; !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return nil, fmt.Errorf("Invalid address: {{%s}}", addr)
		}
		s = "." + s
	}
	var r Ref
	for i := 0; i < len(s); {
		switch s[i] {
		case '.': // [^\d\W]\w*
			j := i + 1
			if j < len(s) && isWordByte(s[j]) && !isDigit(s[j]) {
				for j++; j < len(s) && isWordByte(s[j]); j++ {
				}
				r = append(r, Step{Name: s[i+1 : j]})
				i = j
				continue
			}
		case '[': // [\w\-\./]+
			j := i + 1
			for j < len(s) && (isWordByte(s[j]) || s[j] == '-' || s[j] == '.' || s[j] == '/') {
				j++
			}
			if j > i+1 && j < len(s) && s[j] == ']' {
				r = append(r, Step{Name: s[i+1 : j], Index: true})
				i = j + 1
				continue
			}
		}
		return nil, fmt.Errorf("Badly formed address %s", s)
	}
	return r, nil
}

// tag is one {{...}} in a string.
type tag struct {
	start, end int // byte offsets of "{{" and after "}}"
	addr       string
	alias      bool // {{&addr}}: kept as {{addr}} by one interpolation
}

// scanTags finds tags as pystachio's `{{(&)?([^{}]+?)\1?}}`.
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
		content := s[i+2 : j]
		t := tag{start: i, end: j + 2, addr: content}
		if len(content) > 1 && content[0] == '&' {
			t.alias = true
			t.addr = content[1:]
			if len(t.addr) > 1 && strings.HasSuffix(t.addr, "&") {
				t.addr = t.addr[:len(t.addr)-1]
			}
		}
		tags = append(tags, t)
		i = j + 2
	}
	return tags
}

// Refs returns the references written in s, in order, without repeats
// (malformed ones are skipped; aliases count as their reference).
func Refs(s string) []Ref {
	var refs []Ref
	seen := map[string]bool{}
	for _, t := range scanTags(s) {
		if r, err := ParseRef(t.addr); err == nil && !seen[r.String()] {
			seen[r.String()] = true
			refs = append(refs, r)
		}
	}
	return refs
}

// Result is a string after interpolation.
type Result struct {
	// Out is the interpolated string; what did not resolve is left as
	// written.
	Out string
	// Unbound are the references left unresolved, without repeats.
	Unbound []Ref
	// Errs are why pystachio or Aurora would refuse the string outright
	// (a malformed reference, a cycle, a reference to a struct...).
	Errs []string
}

// Err is nil when r is fully usable: no Errs, and (when strict) nothing
// unbound.
func (r *Result) err(strict bool) error {
	msgs := append([]string(nil), r.Errs...)
	if strict && len(r.Unbound) > 0 {
		names := make([]string, len(r.Unbound))
		for i, u := range r.Unbound {
			names[i] = u.String()
		}
		msgs = append(msgs, "unbound references "+strings.Join(names, " "))
	}
	if len(msgs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInterpolate, strings.Join(msgs, "; "))
}

// ErrInterpolate is wrapped by every error of Interpolator.String.
var ErrInterpolate = errors.New("cannot interpolate")

// ErrUnbound, returned by Node.Ports, leaves the port unbound.
var ErrUnbound = errors.New("unbound")

// Node is what a node binds; a nil field is left unbound.
type Node struct {
	Instance *int    // {{mesos.instance}}
	Hostname *string // {{mesos.hostname}}
	TaskID   *string // {{thermos.task_id}}
	// Ports returns the port of {{thermos.ports[NAME]}}.
	Ports func(name string) (int, error)
}

// Option configures an Interpolator.
type Option func(*Interpolator)

// Strict makes Interpolator.String fail on any reference left unbound.
func Strict() Option { return func(in *Interpolator) { in.strict = true } }

// WithNode adds the node's pass: after the client's two passes, the
// node's bindings are bound and the result interpolated again.
func WithNode(n Node) Option {
	return func(in *Interpolator) { in.node = &n }
}

// Interpolator interpolates the values of one tree. It remembers each
// value's result: the tree must not change while it is in use.
type Interpolator struct {
	strict bool
	node   *Node
	base   *Interpolator // the client's passes, when node is set
	passes [2]pass
}

type pass struct {
	results map[*Value]*Result
	active  map[*Value]bool
}

// New returns an Interpolator of the client's passes, changed by opts.
func New(opts ...Option) *Interpolator {
	in := &Interpolator{}
	for _, o := range opts {
		o(in)
	}
	in.init()
	if in.node != nil {
		in.base = &Interpolator{strict: in.strict}
		in.base.init()
	}
	return in
}

// On returns an Interpolator that shares in's client passes (so they run
// once) and adds the node's, changed by opts.
func (in *Interpolator) On(node Node, opts ...Option) *Interpolator {
	base := in
	if in.base != nil {
		base = in.base
	}
	out := &Interpolator{node: &node, base: base}
	for _, o := range opts {
		o(out)
	}
	out.init()
	return out
}

func (in *Interpolator) init() {
	for i := range in.passes {
		in.passes[i] = pass{results: map[*Value]*Result{}, active: map[*Value]bool{}}
	}
}

// maxRounds is pystachio's MAX_ITERATIONS; maxLength bounds a string that
// doubles at each round (pystachio would exhaust memory instead).
const (
	maxRounds = 100
	maxLength = 1 << 20
)

// Value returns the final interpolation of the scalar v.
func (in *Interpolator) Value(v *Value) *Result {
	return in.pass(v, 1)
}

// String is Value(v).Out, or an error (ErrInterpolate) when v cannot be
// used: a malformed reference, a cycle, or (Strict) anything unbound.
func (in *Interpolator) String(v *Value) (string, error) {
	r := in.Value(v)
	if err := r.err(in.strict); err != nil {
		return "", err
	}
	return r.Out, nil
}

// Interpolate interpolates s as if it were written inside scope (nil: no
// struct) with the client's passes and, WithNode, the node's.
func (in *Interpolator) Interpolate(s string, scope *Value) *Result {
	v := &Value{Kind: Scalar, Text: s, Template: true, Parent: scope}
	return in.Value(v)
}

// pass returns v after client pass p (0: AuroraConfig.job, 1: convert)
// or, on an Interpolator WithNode, after the node's pass (p = 1).
func (in *Interpolator) pass(v *Value, p int) *Result {
	if v.Kind != Scalar {
		panic("mustache: interpolating a " + kindName(v))
	}
	if !v.Template {
		return &Result{Out: v.Text}
	}
	st := &in.passes[p]
	if r, ok := st.results[v]; ok {
		return r
	}
	var text string
	var errs []string
	switch {
	case in.node != nil && p == 1:
		prev := in.base.pass(v, 1)
		text, errs = prev.Out, prev.Errs
	case p == 1:
		prev := in.pass(v, 0)
		text, errs = prev.Out, prev.Errs
	default:
		text = v.Text
	}
	st.active[v] = true
	r := in.resolve(text, v.scopes(), p)
	delete(st.active, v)
	r.Errs = appendNew(errs, r.Errs...)
	if v.Coerce != nil && len(r.Unbound) == 0 && len(r.Errs) == 0 {
		if c, err := v.Coerce(r.Out); err != nil {
			r.Errs = append(r.Errs, err.Error())
		} else {
			r.Out = c
		}
	}
	st.results[v] = r
	return r
}

func appendNew(list []string, msgs ...string) []string {
	for _, m := range msgs {
		if !contains(list, m) {
			list = append(list, m)
		}
	}
	return list
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// resolve is pystachio's MustacheParser.resolve of s in the given scopes.
func (in *Interpolator) resolve(s string, scopes []*Value, p int) *Result {
	res := &Result{}
	fail := func(msg string) { res.Errs = appendNew(res.Errs, msg) }
	stream := s
	for round := 0; ; round++ {
		if round == maxRounds || len(stream) > maxLength {
			fail(fmt.Sprintf("Unable to interpolate %s!  Maximum replacements reached.", s))
			res.Out = s
			return res
		}
		var b strings.Builder
		pos, resolved := 0, false
		for _, t := range scanTags(stream) {
			b.WriteString(stream[pos:t.start])
			pos = t.end
			if t.alias {
				b.WriteString(stream[t.start:t.end])
				continue
			}
			r, err := ParseRef(t.addr)
			if err != nil {
				fail(err.Error())
				b.WriteString(stream[t.start:t.end])
				continue
			}
			value, found, msg := in.find(r, scopes, p)
			if msg != "" {
				fail(msg)
			}
			if found {
				b.WriteString(value)
				resolved = true
			} else {
				b.WriteString(r.String())
			}
		}
		b.WriteString(stream[pos:])
		stream = b.String()
		if !resolved {
			break
		}
	}
	// The last pass: aliases become plain tags, and what is left is unbound.
	var b strings.Builder
	pos := 0
	seen := map[string]bool{}
	for _, t := range scanTags(stream) {
		b.WriteString(stream[pos:t.start])
		pos = t.end
		b.WriteString("{{" + t.addr + "}}")
		if t.alias {
			continue
		}
		if r, err := ParseRef(t.addr); err == nil && !seen[r.String()] {
			seen[r.String()] = true
			res.Unbound = append(res.Unbound, r)
		}
	}
	b.WriteString(stream[pos:])
	res.Out = b.String()
	return res
}

// find resolves r in the scopes, then in the bound environments. msg is
// set when r resolves to something that cannot be pasted.
func (in *Interpolator) find(r Ref, scopes []*Value, p int) (value string, found bool, msg string) {
	for _, s := range scopes {
		n := lookup(s, r)
		if n == nil {
			continue
		}
		if n.Kind != Scalar {
			return "", true, fmt.Sprintf("%s refers to a %s, not to a value", r, kindName(n))
		}
		if in.passes[p].active[n] {
			return "", true, fmt.Sprintf("Unable to interpolate %s!  Maximum replacements reached.", r)
		}
		res := in.pass(n, p)
		if in.strict && len(res.Errs) > 0 {
			return res.Out, true, res.Errs[0]
		}
		// Lenient: n's errors are reported where n is written.
		return res.Out, true, ""
	}
	switch {
	case r.Is("mesos", "role"), r.Is("thermos", "user"):
		return "{{role}}", true, ""
	case r.Is("mesos", "cluster"):
		return "{{cluster}}", true, ""
	}
	if in.node == nil || p != 1 {
		return "", false, ""
	}
	n := in.node
	switch {
	case r.Is("mesos", "instance") && n.Instance != nil:
		return strconv.Itoa(*n.Instance), true, ""
	case r.Is("mesos", "hostname") && n.Hostname != nil:
		return *n.Hostname, true, ""
	case r.Is("thermos", "task_id") && n.TaskID != nil:
		return *n.TaskID, true, ""
	case r.Port() != "" && n.Ports != nil:
		port, err := n.Ports(r.Port())
		if errors.Is(err, ErrUnbound) {
			return "", false, ""
		}
		if err != nil {
			return "", false, err.Error()
		}
		return strconv.Itoa(port), true, ""
	}
	return "", false, ""
}

func kindName(n *Value) string {
	switch n.Kind {
	case Struct:
		return n.Type
	case List:
		return "list"
	case Map:
		return "map"
	}
	return "value"
}

// lookup follows r from n, as pystachio's find: nil when any step misses.
func lookup(n *Value, r Ref) *Value {
	for _, c := range r {
		switch n.Kind {
		case Struct:
			if c.Index {
				return nil
			}
			n = n.Fields[c.Name]
		case List:
			if !c.Index {
				return nil
			}
			i, err := strconv.Atoi(c.Name)
			if err != nil {
				return nil
			}
			if i < 0 {
				i += len(n.Elems)
			}
			if i < 0 || i >= len(n.Elems) {
				return nil
			}
			n = n.Elems[i]
		case Map:
			if !c.Index {
				return nil
			}
			n = n.Fields[c.Name]
		default:
			return nil
		}
		if n == nil {
			return nil
		}
	}
	return n
}

// Lookup follows r from v (nil when a step misses).
func Lookup(v *Value, r Ref) *Value { return lookup(v, r) }

// FormatFloat is Python 2.7's str(float): 12 significant digits, 1.0,
// 0.5, 1e-05, 1e+16, 1.23456789012e+14.
func FormatFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "nan"
	case math.IsInf(f, 1):
		return "inf"
	case math.IsInf(f, -1):
		return "-inf"
	}
	s := strconv.FormatFloat(f, 'g', 12, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0"
	}
	return s
}

// ReprFloat is Python 2.7's repr(float): the shortest form that reads back
// (1.0, 0.1, 1e-05, 1e+16), as in messages formatted with %r.
func ReprFloat(f float64) string {
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

package aurora

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// This file resolves {{mustache}} references the way pystachio does when
// Aurora's client interpolates a job; the rules are in the package doc.

type nodeKind int

const (
	structNode nodeKind = iota
	listNode
	mapNode
	leafNode
)

// node is one value of a job, with Aurora's defaults filled in.
type node struct {
	kind      nodeKind
	typ       string           // struct: pystachio's class name
	fields    map[string]*node // struct: attributes present or defaulted
	names     []string         // struct: the keys of fields, sorted (by walk)
	elems     []*node          // list
	entries   map[string]*node // map: values
	keys      []*node          // map: keys, as string leaves
	text      string           // leaf: Python's str() of the value
	isString  bool             // leaf: a String (interpolated)
	parent    *node
	path      string
	defaulted bool    // supplied by a default, not written by the author
	result    *result // string leaf: interpolated, once analysis.leaf ran
	active    bool    // string leaf: being interpolated (a cycle if met again)
}

func build(rv reflect.Value, path string, parent *node, defaulted bool) *node {
	switch rv.Kind() {
	case reflect.Pointer:
		return build(rv.Elem(), path, parent, defaulted)
	case reflect.Struct:
		n := &node{kind: structNode, typ: schemaName(rv.Type()), fields: map[string]*node{},
			parent: parent, path: path, defaulted: defaulted}
		for _, f := range fieldsOf(rv.Type()) {
			fv := rv.Field(f.index)
			fpath := join(path, f.name)
			switch {
			case !fv.IsNil():
				n.fields[f.name] = build(fv, fpath, n, defaulted)
			case f.def != "":
				n.fields[f.name] = build(defaultProto(fv.Type(), f.def), fpath, n, true)
			}
		}
		return n
	case reflect.Slice:
		n := &node{kind: listNode, parent: parent, path: path, defaulted: defaulted}
		for i := 0; i < rv.Len(); i++ {
			n.elems = append(n.elems, build(rv.Index(i), index(path, i), n, defaulted))
		}
		return n
	case reflect.Map:
		n := &node{kind: mapNode, entries: map[string]*node{}, parent: parent, path: path, defaulted: defaulted}
		keys := make([]string, 0, rv.Len())
		for _, k := range rv.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		for _, k := range keys {
			kpath := mapKey(path, k)
			n.entries[k] = build(rv.MapIndex(reflect.ValueOf(k)), kpath, n, defaulted)
			n.keys = append(n.keys, &node{kind: leafNode, text: k, isString: true, parent: n,
				path: kpath, defaulted: defaulted})
		}
		return n
	case reflect.String:
		return &node{kind: leafNode, text: rv.String(), isString: true, parent: parent, path: path, defaulted: defaulted}
	case reflect.Int64:
		return &node{kind: leafNode, text: strconv.FormatInt(rv.Int(), 10), parent: parent, path: path, defaulted: defaulted}
	case reflect.Float64:
		return &node{kind: leafNode, text: pyFloat(rv.Float()), parent: parent, path: path, defaulted: defaulted}
	case reflect.Bool:
		return &node{kind: leafNode, text: pyBool(rv.Bool()), parent: parent, path: path, defaulted: defaulted}
	}
	panic(fmt.Sprintf("aurora: cannot model %s", rv.Type()))
}

// scopes are the structs enclosing n, innermost first.
func (n *node) scopes() []*node {
	var s []*node
	for p := n.parent; p != nil; p = p.parent {
		if p.kind == structNode {
			s = append(s, p)
		}
	}
	return s
}

// walk calls fn for n and every node below it (map keys included).
func (n *node) walk(fn func(*node)) {
	fn(n)
	switch n.kind {
	case structNode:
		if n.names == nil { // sorted once: a job is walked several times
			n.names = make([]string, 0, len(n.fields))
			for k := range n.fields {
				n.names = append(n.names, k)
			}
			sort.Strings(n.names)
		}
		for _, k := range n.names {
			n.fields[k].walk(fn)
		}
	case listNode:
		for _, e := range n.elems {
			e.walk(fn)
		}
	case mapNode:
		for _, k := range n.keys {
			n.entries[k.text].walk(fn)
			k.walk(fn)
		}
	}
}

// comp is one step of a reference: .name or [name].
type comp struct {
	name  string
	index bool
}

// ref is a parsed mustache address, as pystachio's Ref.
type ref []comp

func (r ref) address() string {
	var b strings.Builder
	for i, c := range r {
		switch {
		case c.index:
			b.WriteString("[" + c.name + "]")
		case i == 0:
			b.WriteString(c.name)
		default:
			b.WriteString("." + c.name)
		}
	}
	return b.String()
}

func (r ref) String() string { return "{{" + r.address() + "}}" }

func (r ref) is(address ...comp) bool {
	if len(r) != len(address) {
		return false
	}
	for i := range r {
		if r[i] != address[i] {
			return false
		}
	}
	return true
}

func dot(name string) comp { return comp{name: name} }

// isRuntime reports whether the node binds r itself (Aurora's client leaves
// these unbound on purpose).
func (r ref) isRuntime() bool {
	return r.is(dot("thermos"), dot("task_id")) || r.is(dot("mesos"), dot("instance")) ||
		r.is(dot("mesos"), dot("hostname")) ||
		(len(r) == 3 && r[0] == dot("thermos") && r[1] == dot("ports") && r[2].index)
}

// isWordRune is Python 3's \w: letters and digits of any script, and "_".
func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) }

// parseRef parses an address as pystachio's Ref.from_address.
func parseRef(addr string) (ref, error) {
	s := addr
	if !strings.HasPrefix(s, "[") && !strings.HasPrefix(s, ".") {
		c := s[0]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return nil, fmt.Errorf("Invalid address: {{%s}}", addr)
		}
		s = "." + s
	}
	rs := []rune(s)
	var r ref
	for i := 0; i < len(rs); {
		switch rs[i] {
		case '.': // [^\d\W]\w*
			j := i + 1
			if j < len(rs) && isWordRune(rs[j]) && !unicode.IsDigit(rs[j]) {
				for j++; j < len(rs) && isWordRune(rs[j]); j++ {
				}
				r = append(r, comp{name: string(rs[i+1 : j])})
				i = j
				continue
			}
		case '[': // [\w\-\./]+
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
		return nil, fmt.Errorf("Badly formed address %s", s)
	}
	return r, nil
}

// tag is one {{...}} in a string.
type tag struct {
	start, end int // byte offsets of "{{" and after "}}"
	addr       string
	alias      bool // {{&addr}}: kept literally as {{addr}}
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

// result is a string after interpolation.
type result struct {
	out     string   // aliases written as {{addr}}, unresolved refs kept
	unbound []ref    // references left unresolved
	errs    []string // Aurora would refuse the string outright
}

// analysis is a job modelled as nodes, with its strings interpolated (the
// results are kept on the nodes, which belong to one analysis).
type analysis struct {
	root *node
}

func analyze(j *Job, prefix string) *analysis {
	return &analysis{root: build(reflect.ValueOf(j).Elem(), prefix, nil, false)}
}

// leaf returns the interpolated form of the string leaf n.
func (a *analysis) leaf(n *node) *result {
	if n.result != nil {
		return n.result
	}
	n.active = true
	r := a.interpolate(n.text, n.scopes())
	n.active = false
	n.result = r
	return r
}

// str is the interpolated value of attribute attr of the struct s ("" when
// absent).
func (a *analysis) str(s *node, attr string) string {
	if s == nil || s.kind != structNode {
		return ""
	}
	n := s.fields[attr]
	if n == nil || n.kind != leafNode {
		return ""
	}
	if !n.isString {
		return n.text
	}
	return a.leaf(n).out
}

// maxReplacements is pystachio's MAX_ITERATIONS; maxLength bounds a string
// that doubles at each round (pystachio would exhaust memory instead).
const (
	maxReplacements = 100
	maxLength       = 1 << 20
)

func (a *analysis) interpolate(s string, scopes []*node) *result {
	res := &result{}
	seen := map[string]bool{}
	fail := func(msg string) {
		if !seen[msg] {
			seen[msg] = true
			res.errs = append(res.errs, msg)
		}
	}
	stream := s
	for round := 0; ; round++ {
		if round == maxReplacements || len(stream) > maxLength {
			fail(fmt.Sprintf("Unable to interpolate %s!  Maximum replacements reached.", s))
			res.out = s
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
			r, err := parseRef(t.addr)
			if err != nil {
				fail(err.Error())
				b.WriteString(stream[t.start:t.end])
				continue
			}
			value, found, msg := a.find(r, scopes)
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
	bound := map[string]bool{}
	for _, t := range scanTags(stream) {
		b.WriteString(stream[pos:t.start])
		pos = t.end
		b.WriteString("{{" + t.addr + "}}")
		if t.alias {
			continue
		}
		if r, err := parseRef(t.addr); err == nil && !bound[r.String()] {
			bound[r.String()] = true
			res.unbound = append(res.unbound, r)
		}
	}
	b.WriteString(stream[pos:])
	res.out = b.String()
	return res
}

// find resolves r in the given scopes, then in Aurora's standard bindings.
// msg is set when r resolves to something Aurora could not use.
func (a *analysis) find(r ref, scopes []*node) (value string, found bool, msg string) {
	for _, s := range scopes {
		n := lookup(s, r)
		if n == nil {
			continue
		}
		if n.kind != leafNode {
			return "", true, fmt.Sprintf("%s refers to a %s, not to a value", r, kindName(n))
		}
		if !n.isString {
			return n.text, true, ""
		}
		if n.active {
			return "", true, fmt.Sprintf("Unable to interpolate %s!  Maximum replacements reached.", r)
		}
		return a.leaf(n).out, true, ""
	}
	switch {
	case r.is(dot("mesos"), dot("role")), r.is(dot("thermos"), dot("user")):
		return "{{role}}", true, ""
	case r.is(dot("mesos"), dot("cluster")):
		return "{{cluster}}", true, ""
	}
	return "", false, ""
}

func kindName(n *node) string {
	switch n.kind {
	case structNode:
		return n.typ
	case listNode:
		return "list"
	}
	return "map"
}

// lookup follows r from n, as pystachio's find: nil when any step misses.
func lookup(n *node, r ref) *node {
	for _, c := range r {
		switch n.kind {
		case structNode:
			if c.index {
				return nil
			}
			n = n.fields[c.name]
		case listNode:
			if !c.index {
				return nil
			}
			i, err := strconv.Atoi(c.name)
			if err != nil {
				return nil
			}
			if i < 0 {
				i += len(n.elems)
			}
			if i < 0 || i >= len(n.elems) {
				return nil
			}
			n = n.elems[i]
		case mapNode:
			if !c.index {
				return nil
			}
			n = n.entries[c.name]
		default:
			return nil
		}
		if n == nil {
			return nil
		}
	}
	return n
}

// checkLeaf returns why Aurora (client or executor) would refuse the string
// leaf n, with Aurora's messages.
func (a *analysis) checkLeaf(n *node) []string {
	res := a.leaf(n)
	msgs := append([]string(nil), res.errs...)
	var unbound, unexpected []string
	for _, r := range res.unbound {
		switch {
		case r.isRuntime():
		case len(r) >= 3 && r[0] == dot("thermos") && r[1] == dot("ports"):
			if !r[2].index {
				msgs = append(msgs, fmt.Sprintf(
					"Bad port specification %q (should be of form \"thermos.ports[name]\"", r.address()))
			} else {
				unexpected = append(unexpected, r.String())
			}
		default:
			unbound = append(unbound, r.String())
		}
	}
	if len(unbound) > 0 {
		msgs = append(msgs, "Config contains unbound variables: "+strings.Join(unbound, " "))
	}
	if len(msgs) == 0 {
		for _, left := range runtimeLeftovers(res.out) {
			if !contains(unexpected, left) {
				unexpected = append(unexpected, left)
			}
		}
	}
	if len(unexpected) > 0 {
		msgs = append(msgs, "Unexpected unbound refs: "+strings.Join(unexpected, " "))
	}
	return msgs
}

// runtimeLeftovers binds the node's own references in s, as the executor
// will, and returns the references that would then remain.
func runtimeLeftovers(s string) []string {
	var originals []string
	var b strings.Builder
	var left []string
	pos := 0
	for _, t := range scanTags(s) {
		b.WriteString(s[pos:t.start])
		pos = t.end
		if r, err := parseRef(t.addr); err == nil && r.isRuntime() {
			// A marker that can sit inside a tag, so that nesting shows.
			fmt.Fprintf(&b, "\x00%d\x00", len(originals))
			originals = append(originals, s[t.start:t.end])
			continue
		}
		left = append(left, s[t.start:t.end])
		b.WriteString(s[t.start:t.end])
	}
	b.WriteString(s[pos:])
	bound := b.String()
	restore := func(x string) string {
		for i, o := range originals {
			x = strings.ReplaceAll(x, fmt.Sprintf("\x00%d\x00", i), o)
		}
		return x
	}
	for _, t := range scanTags(bound) {
		if text := restore(bound[t.start:t.end]); !contains(left, text) {
			left = append(left, text)
		}
	}
	return left
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// pyFloat formats f as Python's repr(float) (and str() since Python 2.7's
// short repr): 1.0, 0.5, 1e-05, 1e+16.
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

func pyBool(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

package nixgen

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// lineWidth is where a set or list stops being written on one line.
const lineWidth = 80

// render writes n as it appears after `key = ` at indentation ind.
func render(n node, ind string) string {
	switch n := n.(type) {
	case atom:
		return string(n)
	case compound:
		return string(n)
	case indented:
		var b strings.Builder
		b.WriteString("''\n")
		for _, l := range n.lines {
			if l != "" {
				b.WriteString(ind + "  " + l)
			}
			b.WriteString("\n")
		}
		// The last line holds the closing quotes: a cmdline without a final
		// newline ends on its own last line.
		s := strings.TrimSuffix(b.String(), "\n")
		if n.lines[len(n.lines)-1] == "" {
			s += ind
		}
		return s + "''"
	case set:
		if s, ok := inlineSet(n); ok && len(ind)+len(s) < lineWidth {
			return s
		}
		head := "{"
		if n.ctor != "" {
			head = n.ctor + " {"
		}
		if len(n.fields) == 0 {
			return head + " }"
		}
		var b strings.Builder
		b.WriteString(head + "\n")
		for _, f := range n.fields {
			b.WriteString(renderField(f, ind+"  "))
		}
		return b.String() + ind + "}"
	case list:
		if s, ok := inlineList(n); ok && len(ind)+len(s) < lineWidth {
			return s
		}
		var b strings.Builder
		b.WriteString("[\n")
		for _, e := range n {
			b.WriteString(ind + "  " + listElem(e, ind+"  ") + "\n")
		}
		return b.String() + ind + "]"
	case concatenation:
		parts := make([]string, len(n))
		for i, p := range n {
			parts[i] = render(p, ind)
		}
		one := strings.Join(parts, " ++ ")
		if len(ind)+len(one) < lineWidth {
			return one
		}
		return strings.Join(parts, "\n"+ind+"  ++ ")
	}
	panic(fmt.Sprintf("nixgen: unknown node %T", n))
}

// renderField writes `key = value;` (with its comment) at indentation ind.
func renderField(f field, ind string) string {
	if f.inherit {
		return ind + "inherit " + f.key + ";\n"
	}
	var b strings.Builder
	if f.comment != "" {
		for _, l := range strings.Split(f.comment, "\n") {
			b.WriteString(ind + "# " + l + "\n")
		}
	}
	b.WriteString(ind + attrName(f.key) + " = " + render(f.value, ind) + ";\n")
	return b.String()
}

func listElem(e node, ind string) string {
	s := render(e, ind)
	switch e.(type) {
	case atom, list, indented:
		return s
	case set:
		if e.(set).ctor == "" {
			return s
		}
	}
	return "(" + s + ")"
}

// inlineSet writes a set on one line, if it has no comments and no
// multi-line value.
func inlineSet(s set) (string, bool) {
	head := "{"
	if s.ctor != "" {
		head = s.ctor + " {"
	}
	if len(s.fields) == 0 {
		return head + " }", true
	}
	parts := []string{head}
	for _, f := range s.fields {
		if f.comment != "" {
			return "", false
		}
		if f.inherit {
			parts = append(parts, "inherit "+f.key+";")
			continue
		}
		v := render(f.value, "")
		if strings.Contains(v, "\n") {
			return "", false
		}
		parts = append(parts, attrName(f.key)+" = "+v+";")
	}
	return strings.Join(append(parts, "}"), " "), true
}

func inlineList(l list) (string, bool) {
	if len(l) == 0 {
		return "[ ]", true
	}
	parts := []string{"["}
	for _, e := range l {
		v := listElem(e, "")
		if strings.Contains(v, "\n") {
			return "", false
		}
		parts = append(parts, v)
	}
	return strings.Join(append(parts, "]"), " "), true
}

// renderInline writes a list on one line, after prefix.
func renderInline(l list, prefix string) string {
	s, _ := inlineList(l)
	return prefix + s
}

func indentLines(s, ind string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = ind + l
		}
	}
	return strings.Join(lines, "\n")
}

// ---- Names ----

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_'-]*$`)

var keywords = []string{"if", "then", "else", "assert", "with", "let", "in", "rec", "inherit", "or"}

// attrName writes an attribute name, quoted unless it is an identifier.
func attrName(k string) string {
	if identifier.MatchString(k) && !slices.Contains(keywords, k) {
		return k
	}
	return nixString(k)
}

// shadowed are names a process binding must not take: the library's, which
// `with aurora;` brings into scope and a let binding would hide, the
// file's arguments, and Nix's own globals.
var shadowed = []string{
	"aurora", "nixInit", "pkgs", "builtins", "import", "true", "false", "null", "toString",
	"map", "throw", "abort", "derivation", "baseNameOf", "dirOf", "isNull", "removeAttrs",
	"placeholder", "fetchTarball", "scopedImport",
	"Job", "Service", "Task", "Process", "Resources", "Constraint", "order", "Tasks",
	"SequentialTask", "SimpleTask", "templateFile", "templateFileWith", "B", "KB", "MB", "GB", "TB",
	"Announcer", "Container", "CoordinatorSlaPolicy", "CountSlaPolicy", "Docker", "ExecutorConfig",
	"HealthCheckConfig", "HealthCheckerConfig", "HttpHealthChecker", "HttpLifecycleConfig",
	"LifecycleConfig", "Logger", "Metadata", "Parameter", "PartitionPolicy", "PercentageSlaPolicy",
	"QueueUpdateStrategy", "RotatePolicy", "ShellHealthChecker", "UpdateConfig",
}

var notIdent = regexp.MustCompile(`[^A-Za-z0-9_'-]+`)

// bindingName is the let binding for the process called name: the name
// itself when it can be, else a close identifier not in taken.
func bindingName(name string, taken map[string]bool) string {
	id := notIdent.ReplaceAllString(name, "_")
	if id == "" || !identifier.MatchString(id) {
		id = "p_" + id
	}
	if slices.Contains(keywords, id) || slices.Contains(shadowed, id) {
		id += "_process"
	}
	base := id
	for i := 2; taken[id]; i++ {
		id = fmt.Sprintf("%s_%d", base, i)
	}
	return id
}

// ---- Strings ----

// stringNode writes s as an indented string when it spans lines and one
// reads back exactly, else as a "..." string.
func stringNode(s string) node {
	if lines, ok := indentedLines(s); ok {
		return indented{lines: lines}
	}
	return atom(nixString(s))
}

// nixString quotes s as a "..." string: \ " and ${ escaped, control
// characters as escapes.
func nixString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' || c == '"':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '$' && i+1 < len(s) && s[i+1] == '{':
			b.WriteString(`\$`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// indentedLines returns the lines of s escaped for an indented string, and
// whether such a string reads back as exactly s. Nix strips the
// indentation common to all lines that are not spaces only, drops the
// first line when it holds spaces only and the last when it holds spaces
// only; each is avoided here: some line starts without a space, and the
// last line is empty (s ends with a newline) or holds more than spaces.
// Two single quotes become three, and a dollar-brace gets two single quotes
// before it; a single quote before a dollar-brace or at the very end would
// run into those escapes or the closing quotes, and then s is written as a
// "..." string.
func indentedLines(s string) ([]string, bool) {
	if !strings.Contains(s, "\n") || strings.ContainsAny(s, "\r\x00") ||
		strings.Contains(s, "'${") || strings.HasSuffix(s, "'") {
		return nil, false
	}
	for _, c := range s {
		if c < 0x20 && c != '\n' && c != '\t' {
			return nil, false
		}
	}
	lines := strings.Split(s, "\n")
	flush := false
	for _, l := range lines {
		if strings.Trim(l, " ") != "" && !strings.HasPrefix(l, " ") {
			flush = true
		}
	}
	last := lines[len(lines)-1]
	if !flush || (last != "" && strings.Trim(last, " ") == "") {
		return nil, false
	}
	esc := strings.NewReplacer("''", "'''", "${", "''${")
	for i, l := range lines {
		lines[i] = esc.Replace(l)
	}
	return lines, true
}

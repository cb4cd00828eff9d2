// Package bindings expands Thermos' mustache bindings ({{thermos.ports[http]}},
// {{mesos.instance}}, ...) in text, and reads the binding values that a
// templated file's cmdline fragment hands to `nix-init render`.
//
// Thermos expands bindings in cmdlines only. The Nix library's templateFile
// puts each binding of a file in a quoted here-document of the cmdline, one
// value per section ended by a separator line; Thermos substitutes the
// values, bash passes them on untouched, and this package turns them back
// into name -> value. It never evaluates anything it reads.
package bindings

import (
	"fmt"
	"strings"
)

// ParseSections splits data (the here-document: each value followed by a
// newline and a separator line) into one value per name, in order.
func ParseSections(data, separator string, names []string) (map[string]string, error) {
	if separator == "" {
		return nil, fmt.Errorf("empty separator")
	}
	end := "\n" + separator + "\n"
	values := make(map[string]string, len(names))
	rest := "\n" + data // an empty first value leaves no line before its separator
	for i, name := range names {
		idx := strings.Index(rest, end)
		if idx < 0 {
			return nil, fmt.Errorf("value %d (%s): no separator line %q: got %d of %d values", i+1, name, separator, i, len(names))
		}
		values[name] = rest[1:idx]
		rest = rest[idx+len(end)-1:]
	}
	if rest != "\n" {
		return nil, fmt.Errorf("%d bytes after the last of %d values", len(rest)-1, len(names))
	}
	return values, nil
}

// Expand replaces every {{name}} in text whose name is in values. With
// strict, a {{...}} left unexpanded is an error.
func Expand(text string, values map[string]string, strict bool) (string, error) {
	var b strings.Builder
	for {
		start := strings.Index(text, "{{")
		if start < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		stop := strings.Index(text[start:], "}}")
		if stop < 0 {
			b.WriteString(text)
			return b.String(), nil
		}
		name := text[start+2 : start+stop]
		v, ok := values[name]
		if !ok {
			if strict {
				return "", fmt.Errorf("unbound {{%s}}", name)
			}
			v = text[start : start+stop+2]
		}
		b.WriteString(text[:start])
		b.WriteString(v)
		text = text[start+stop+2:]
	}
}

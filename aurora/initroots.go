package aurora

import (
	"errors"
	"fmt"
	"strings"
)

// InitRoot is one closure an init process (nix_init or nix_init_final)
// realises: an argument NAME=STOREPATH of its cmdline.
type InitRoot struct {
	Process string // the init process
	Name    string // the process the root serves
	Path    string // the root's store path
}

// InitRoots reads the roots the job's init processes realise, in order.
// The cmdline is split as bash would split it (the library single-quotes
// every argument); NAME cannot contain '/', so the first "=/" ends it.
// Flags and arguments that do not name a /nix/store path are skipped; the
// paths are not validated here.
func (j Job) InitRoots() ([]InitRoot, error) {
	if j.Task == nil {
		return nil, nil
	}
	var roots []InitRoot
	for _, p := range j.Task.Processes {
		if p.Name == nil || p.Cmdline == nil || (*p.Name != "nix_init" && *p.Name != "nix_init_final") {
			continue
		}
		words, err := ShellWords(*p.Cmdline)
		if err != nil {
			return nil, fmt.Errorf("process %s: cmdline: %w", *p.Name, err)
		}
		for _, w := range words[min(1, len(words)):] {
			i := strings.Index(w, "=/")
			if i <= 0 || strings.HasPrefix(w, "-") || !strings.HasPrefix(w[i+1:], "/nix/store/") {
				continue
			}
			roots = append(roots, InitRoot{Process: *p.Name, Name: w[:i], Path: w[i+1:]})
		}
	}
	return roots, nil
}

// ShellWords splits a cmdline into words as bash would for the quoting the
// job library produces: blanks separate words, '…' quotes everything up to
// the next ', "…" quotes with \ escaping \ " $ ` and newline, and a
// backslash outside quotes escapes the next character. Anything else
// (expansions, operators) is taken literally.
func ShellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\\\"$`\n", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, errors.New("unterminated double quote")
			}
			inWord = true
		case c == '\\':
			if i+1 < len(s) {
				i++
				if s[i] != '\n' {
					cur.WriteByte(s[i])
				}
			}
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

package binarycache

import (
	"fmt"
	"os"
	"strings"
)

// Netrc holds credentials in the netrc format curl (and so Nix, through
// nix.conf's netrc-file) reads: "machine HOST login USER password PASS"
// entries and an optional "default" entry; "account" values are ignored and
// "macdef" macros are skipped.
type Netrc struct {
	machines []netrcEntry
	def      *netrcEntry
}

type netrcEntry struct {
	host, login, password string
}

// ParseNetrc parses netrc text.
func ParseNetrc(text string) (*Netrc, error) {
	n := &Netrc{}
	var cur *netrcEntry
	var isDefault bool
	flush := func() {
		if cur == nil {
			return
		}
		if isDefault {
			if n.def == nil {
				n.def = cur
			}
		} else {
			n.machines = append(n.machines, *cur)
		}
		cur = nil
	}
	lines := strings.Split(text, "\n")
	var toks []string
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		fields := strings.Fields(line)
		for j := 0; j < len(fields); j++ {
			if fields[j] == "macdef" {
				// The macro runs to the next empty line.
				for i++; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
				}
				break
			}
			toks = append(toks, fields[j])
		}
	}
	for i := 0; i < len(toks); i++ {
		arg := func() (string, error) {
			if i+1 >= len(toks) {
				return "", fmt.Errorf("netrc: %q without a value", toks[i])
			}
			i++
			return toks[i], nil
		}
		switch toks[i] {
		case "machine":
			flush()
			h, err := arg()
			if err != nil {
				return nil, err
			}
			cur, isDefault = &netrcEntry{host: strings.ToLower(h)}, false
		case "default":
			flush()
			cur, isDefault = &netrcEntry{}, true
		case "login", "password", "account":
			key := toks[i]
			v, err := arg()
			if err != nil {
				return nil, err
			}
			if cur == nil {
				return nil, fmt.Errorf("netrc: %q before any machine", key)
			}
			switch key {
			case "login":
				cur.login = v
			case "password":
				cur.password = v
			}
		default:
			return nil, fmt.Errorf("netrc: unexpected %q", toks[i])
		}
	}
	flush()
	return n, nil
}

// LoadNetrc reads a netrc file. A missing file gives an empty Netrc, as in
// Nix, where netrc-file names /etc/nix/netrc whether or not it exists.
func LoadNetrc(file string) (*Netrc, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return &Netrc{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading netrc: %w", err)
	}
	n, err := ParseNetrc(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return n, nil
}

// Credentials returns the login and password for a host name (without
// port): the first machine entry for it, else the default entry.
func (n *Netrc) Credentials(host string) (login, password string, ok bool) {
	if n == nil {
		return "", "", false
	}
	host = strings.ToLower(host)
	for _, m := range n.machines {
		if m.host == host {
			return m.login, m.password, true
		}
	}
	if n.def != nil {
		return n.def.login, n.def.password, true
	}
	return "", "", false
}

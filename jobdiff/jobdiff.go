// Package jobdiff compares two builds of Aurora jobs for review: which
// processes changed and, in their cmdlines and closures, which store paths
// changed, named by package rather than by hash, so that a reviewer reads
// "openssl-3.0.7 -> openssl-3.0.8" instead of two unrelated config hashes.
//
// It only reads: it never builds, fetches or modifies anything.
package jobdiff

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/nix-aurora/nix-aurora/aurora"
)

// PathChange is one store path that differs between two versions: same
// name, different hash, or present on one side only.
type PathChange struct {
	Name string // the store path's name, e.g. "openssl-3.0.8"
	Old  string // "" when added
	New  string // "" when removed
}

func (c PathChange) String() string {
	switch {
	case c.Old == "":
		return fmt.Sprintf("+ %s (%s)", c.Name, hashPart(c.New))
	case c.New == "":
		return fmt.Sprintf("- %s (%s)", c.Name, hashPart(c.Old))
	default:
		return fmt.Sprintf("~ %s: %s -> %s", c.Name, hashPart(c.Old), hashPart(c.New))
	}
}

// ProcessChange is what changed in one process.
type ProcessChange struct {
	Name    string
	Added   bool
	Removed bool
	// Fields are changed settings other than the cmdline ("max_failures: 1 -> 3").
	Fields []string
	// Cmdline holds the store paths of the cmdline that changed; CmdlineText
	// is set when the cmdline changed beyond its store paths.
	Cmdline     []PathChange
	CmdlineText bool
	// Closure holds the paths of the process's closure that changed, when
	// both closures could be read.
	Closure []PathChange
}

// JobChange is what changed in one job, keyed by its Aurora job key.
type JobChange struct {
	Key       string
	Added     bool
	Removed   bool
	Fields    []string // job and task settings outside the processes
	Processes []ProcessChange
}

// Closure returns the closure (all store paths) of a store path, or an
// error when it cannot be read (e.g. the path is not in the local store).
type Closure func(path string) ([]string, error)

// Compare lists what changed from old to new. closure may be nil; when
// given, the closures of the processes' roots are compared too.
func Compare(old, new []aurora.Job, closure Closure) []JobChange {
	oldByKey, newByKey := byKey(old), byKey(new)
	var out []JobChange
	for _, key := range unionKeys(oldByKey, newByKey) {
		o, inOld := oldByKey[key]
		n, inNew := newByKey[key]
		switch {
		case !inOld:
			out = append(out, JobChange{Key: key, Added: true})
		case !inNew:
			out = append(out, JobChange{Key: key, Removed: true})
		default:
			if c := compareJob(key, o, n, closure); len(c.Fields) > 0 || len(c.Processes) > 0 {
				out = append(out, c)
			}
		}
	}
	return out
}

func byKey(jobs []aurora.Job) map[string]aurora.Job {
	m := map[string]aurora.Job{}
	for _, j := range jobs {
		m[j.Key()] = j
	}
	return m
}

func unionKeys[V any](a, b map[string]V) []string {
	seen := map[string]bool{}
	for k := range a {
		seen[k] = true
	}
	for k := range b {
		seen[k] = true
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func compareJob(key string, o, n aurora.Job, closure Closure) JobChange {
	c := JobChange{Key: key}
	oj, nj := toMap(o), toMap(n)
	// Processes are compared one by one below; the rest generically.
	ot, nt := subMap(oj, "task"), subMap(nj, "task")
	delete(ot, "processes")
	delete(nt, "processes")
	c.Fields = fieldDiff("", oj, nj)

	oldP, newP := processes(o), processes(n)
	oldRoots, newRoots := initRoots(o), initRoots(n)
	for _, name := range unionKeys(oldP, newP) {
		op, inOld := oldP[name]
		np, inNew := newP[name]
		switch {
		case !inOld:
			c.Processes = append(c.Processes, ProcessChange{Name: name, Added: true})
		case !inNew:
			c.Processes = append(c.Processes, ProcessChange{Name: name, Removed: true})
		default:
			pc := compareProcess(name, op, np)
			if closure != nil && (pc.CmdlineText || len(pc.Cmdline) > 0) {
				pc.Closure = withoutCmdline(closureDiff(closure, oldRoots[name], newRoots[name]), pc.Cmdline)
			}
			if len(pc.Fields) > 0 || len(pc.Cmdline) > 0 || pc.CmdlineText || len(pc.Closure) > 0 {
				c.Processes = append(c.Processes, pc)
			}
		}
	}
	return c
}

func processes(j aurora.Job) map[string]aurora.Process {
	m := map[string]aurora.Process{}
	if j.Task == nil {
		return m
	}
	for _, p := range j.Task.Processes {
		if p.Name != nil {
			m[*p.Name] = p
		}
	}
	return m
}

// initRoots maps each process to the root its init process realises. A
// cmdline that cannot be read gives no roots: only the closures go
// uncompared then, and the cmdline difference still shows.
func initRoots(j aurora.Job) map[string]string {
	roots := map[string]string{}
	inits, _ := j.InitRoots()
	for _, r := range inits {
		roots[r.Name] = r.Path
	}
	return roots
}

func compareProcess(name string, o, n aurora.Process) ProcessChange {
	pc := ProcessChange{Name: name}
	om, nm := toMap(o), toMap(n)
	oc, _ := om["cmdline"].(string)
	nc, _ := nm["cmdline"].(string)
	delete(om, "cmdline")
	delete(nm, "cmdline")
	pc.Fields = fieldDiff("", om, nm)
	if oc != nc {
		pc.Cmdline = pathDiff(aurora.StorePaths(oc), aurora.StorePaths(nc))
		// Beyond the store paths, did the text change?
		pc.CmdlineText = maskPaths(oc) != maskPaths(nc)
	}
	return pc
}

// withoutCmdline drops closure changes already listed for the cmdline.
func withoutCmdline(closure, cmdline []PathChange) []PathChange {
	var out []PathChange
	for _, c := range closure {
		listed := false
		for _, d := range cmdline {
			if c == d {
				listed = true
				break
			}
		}
		if !listed {
			out = append(out, c)
		}
	}
	return out
}

func closureDiff(closure Closure, oldRoot, newRoot string) []PathChange {
	if oldRoot == "" || newRoot == "" || oldRoot == newRoot {
		return nil
	}
	o, err1 := closure(oldRoot)
	n, err2 := closure(newRoot)
	if err1 != nil || err2 != nil {
		return nil
	}
	var changes []PathChange
	for _, c := range pathDiff(o, n) {
		// The roots themselves always differ when anything does.
		if c.Old == oldRoot || c.New == newRoot {
			continue
		}
		changes = append(changes, c)
	}
	return changes
}

// pathDiff pairs store paths by name: a name on both sides with different
// hashes is a change; names on one side only are additions or removals.
func pathDiff(old, new []string) []PathChange {
	group := func(paths []string) map[string][]string {
		m := map[string][]string{}
		for _, p := range paths {
			m[pathName(p)] = append(m[pathName(p)], p)
		}
		return m
	}
	om, nm := group(old), group(new)
	var out []PathChange
	var removed, added []PathChange
	for _, name := range unionKeys(om, nm) {
		os, ns := minus(om[name], nm[name]), minus(nm[name], om[name])
		for len(os) > 0 && len(ns) > 0 {
			out = append(out, PathChange{Name: name, Old: os[0], New: ns[0]})
			os, ns = os[1:], ns[1:]
		}
		for _, p := range os {
			removed = append(removed, PathChange{Name: name, Old: p})
		}
		for _, p := range ns {
			added = append(added, PathChange{Name: name, New: p})
		}
	}
	// A new version of a package has another name ("openssl-3.0.7" and
	// "openssl-3.0.8"): pair them by package name, so it reads as a change.
	for i := range removed {
		for j := range added {
			if added[j].New != "" && removed[i].New == "" && packageName(removed[i].Name) == packageName(added[j].Name) {
				removed[i].Name = removed[i].Name + " -> " + added[j].Name
				removed[i].New = added[j].New
				added[j].New = ""
				break
			}
		}
	}
	out = append(out, removed...)
	for _, a := range added {
		if a.New != "" {
			out = append(out, a)
		}
	}
	return out
}

// packageName strips the version from a store path name the way Nix splits
// names: the version starts at the first '-' followed by a digit.
func packageName(name string) string {
	for i := 0; i+1 < len(name); i++ {
		if name[i] == '-' && name[i+1] >= '0' && name[i+1] <= '9' {
			return name[:i]
		}
	}
	return name
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		found := false
		for _, y := range b {
			if x == y {
				found = true
				break
			}
		}
		if !found {
			out = append(out, x)
		}
	}
	sort.Strings(out)
	return out
}

func maskPaths(s string) string {
	for _, p := range aurora.StorePaths(s) {
		s = strings.ReplaceAll(s, p, "/nix/store/<"+pathName(p)+">")
	}
	return s
}

func pathName(p string) string {
	base := p[strings.LastIndex(p, "/")+1:]
	if len(base) > 33 && base[32] == '-' {
		return base[33:]
	}
	return base
}

func hashPart(p string) string {
	base := p[strings.LastIndex(p, "/")+1:]
	if len(base) >= 32 {
		return base[:32]
	}
	return base
}

func toMap(v any) map[string]any {
	data, err := json.Marshal(v)
	if err != nil {
		return map[string]any{}
	}
	var m map[string]any
	if json.Unmarshal(data, &m) != nil || m == nil {
		return map[string]any{}
	}
	return m
}

func subMap(m map[string]any, key string) map[string]any {
	if s, ok := m[key].(map[string]any); ok {
		return s
	}
	return map[string]any{}
}

// fieldDiff lists changed leaves as "path: old -> new".
func fieldDiff(prefix string, o, n map[string]any) []string {
	var out []string
	for _, k := range unionKeys(o, n) {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		ov, inOld := o[k]
		nv, inNew := n[k]
		om, oIsMap := ov.(map[string]any)
		nm, nIsMap := nv.(map[string]any)
		switch {
		case oIsMap && nIsMap:
			out = append(out, fieldDiff(path, om, nm)...)
		case !inOld:
			out = append(out, fmt.Sprintf("%s: added %s", path, compact(nv)))
		case !inNew:
			out = append(out, fmt.Sprintf("%s: removed (was %s)", path, compact(ov)))
		default:
			if a, b := compact(ov), compact(nv); a != b {
				out = append(out, fmt.Sprintf("%s: %s -> %s", path, a, b))
			}
		}
	}
	return out
}

func compact(v any) string {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(data)
}

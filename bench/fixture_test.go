package bench

import (
	"crypto/rand"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// realFixture is a closure of real files, built at bench time from what
// this machine has (nothing of it is in git): the Go source tree split by
// directory, some of Go's own binaries, a Python standard library when one
// is installed and a few large shared libraries, as store paths that refer
// to each other over several levels. Real files compress (xz, zstd) and
// spread over many small files, unlike the Chain fixture's random blobs.
type realFixture struct {
	Root    string
	Closure []string // dependencies first
	Parts   []realPart
	Files   int
	Bytes   int64 // what the files hold, before NAR framing
	Levels  int
	Sources string // how many parts each source gave, "libs 2, python 5, …"
}

// realPart is one store path of the fixture.
type realPart struct {
	Name  string
	Level int
	Refs  []int // indexes of the parts it refers to
	Files int
	Bytes int64
	dir   string // its staged files
}

// What the real fixture takes from the machine at scale 100.
const (
	realMinPart   = 3 << 19  // small directories are merged into paths of at least this
	realMaxPart   = 10 << 20 // a directory above this is split into its entries
	realLevels    = 8        // depth of the graph below the root
	realPyBudget  = 20 << 20 // of the Python standard library
	realLibBudget = 24 << 20 // of shared libraries, largest first
	realLibMax    = 9 << 20  // largest library taken
)

// buildRealFixture stages the fixture's files in a temporary directory and
// builds one derivation per part (builder /bin/sh copying its directory,
// no sandbox), so that the store paths are real Nix outputs whose
// references Nix found by scanning them. scale (1 to 100, percent) keeps
// that share of each part's files (parts of a few files keep every file,
// cut to that share of their bytes), for a quick run with the same graph.
// The paths are deleted from the host store when the benchmark ends.
func buildRealFixture(b *testing.B, scale int) *realFixture {
	b.Helper()
	var nb [6]byte
	if _, err := rand.Read(nb[:]); err != nil {
		b.Fatal(err)
	}
	nonce := fmt.Sprintf("%x", nb)

	stage, err := os.MkdirTemp("", "bench-real-src-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(stage)
	// The builders run as the build users (nixbld*) on a default install.
	if err := os.Chmod(stage, 0o755); err != nil {
		b.Fatal(err)
	}

	// What the fixture is made of; each is a list of (name, paths) groups.
	type source struct {
		prefix string
		groups []group
		cut    bool // few large files: cut them rather than drop some
	}
	var sources []source
	goroot := runtime.GOROOT()
	libDir := multiarchLibDir()
	for _, p := range []string{filepath.Join(goroot, "src"), toolDir(goroot), libDir} {
		if st, err := os.Stat(p); err != nil || !st.IsDir() {
			b.Fatalf("the real fixture needs %s (Go's source tree, Go's tools and the shared libraries of this machine): %v", p, err)
		}
	}
	libs := largestLibraries(b, libDir, realLibBudget, realLibMax)
	if len(libs) == 0 {
		b.Fatalf("the real fixture found no shared library in %s", libDir)
	}
	// Two library paths: every other part refers to the first, as
	// everything refers to libc.
	sources = append(sources, source{"libs", []group{{"a", libs[:(len(libs)+1)/2]}, {"b", libs[(len(libs)+1)/2:]}}, true})
	if py := pythonStdlib(); py != "" {
		sources = append(sources, source{"python", splitTree(b, py, realPyBudget), false})
	} else {
		b.Logf("real fixture: no Python standard library under /usr/lib, left out")
	}
	sources = append(sources, source{"gosrc", splitTree(b, filepath.Join(goroot, "src"), 0), false})
	td := toolDir(goroot)
	var tools []group
	for _, names := range [][]string{{"compile"}, {"link", "asm"}} {
		var files []string
		for _, n := range names {
			if _, err := os.Stat(filepath.Join(td, n)); err == nil {
				files = append(files, filepath.Join(td, n))
			}
		}
		if len(files) == 0 {
			b.Fatalf("the real fixture needs Go's %v in %s", names, td)
		}
		tools = append(tools, group{names[0], files})
	}
	sources = append(sources, source{"gotool", tools, true})

	fx := &realFixture{Levels: realLevels}
	var counts []string
	for _, s := range sources {
		counts = append(counts, fmt.Sprintf("%s %d", s.prefix, len(s.groups)))
		for _, g := range s.groups {
			name := storeSafe(s.prefix + "-" + g.name)
			if len(g.paths) == 0 {
				continue
			}
			dir := filepath.Join(stage, strconv.Itoa(len(fx.Parts)))
			files, bytes := stageGroup(b, dir, g.paths, scale, s.cut)
			fx.Parts = append(fx.Parts, realPart{Name: name, Files: files, Bytes: bytes, dir: dir})
			fx.Files += files
			fx.Bytes += bytes
		}
	}
	fx.Sources = strings.Join(counts, ", ")
	// Levels by position: the libraries are leaves, Go's tools the top.
	// A part refers to the first library path and to two parts of the
	// level below, and the root to every part.
	n := len(fx.Parts)
	if n < realLevels {
		b.Fatalf("real fixture: %d parts, fewer than its %d levels", n, realLevels)
	}
	byLevel := make([][]int, realLevels)
	for i := range fx.Parts {
		l := min(i*realLevels/n, realLevels-1)
		fx.Parts[i].Level = l
		byLevel[l] = append(byLevel[l], i)
	}
	for i := range fx.Parts {
		p := &fx.Parts[i]
		if p.Level == 0 {
			continue
		}
		below := byLevel[p.Level-1]
		refs := []int{0, below[i%len(below)], below[(i+1)%len(below)]}
		slices.Sort(refs)
		p.Refs = slices.Compact(refs)
	}

	var nix strings.Builder
	fmt.Fprintf(&nix, `let
  mk = name: src: refs: derivation {
    inherit name src refs;
    nonce = %s;
    system = builtins.currentSystem;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    args = [ "-c" ''
      set -e
      mkdir $out
      cp -R "$src/." $out/
      mkdir -p $out/nix-support
      for r in $refs; do echo "$r" >> $out/nix-support/refs; done
    '' ];
  };
`, nixQuote(nonce))
	var all []string
	for i, p := range fx.Parts {
		var refs []string
		for _, r := range p.Refs {
			refs = append(refs, fmt.Sprintf("p%d", r))
		}
		fmt.Fprintf(&nix, "  p%d = mk %s %s [ %s ];\n", i, nixQuote("bench-real-"+p.Name), nixQuote(p.dir), strings.Join(refs, " "))
		all = append(all, fmt.Sprintf("p%d", i))
	}
	fmt.Fprintf(&nix, "  root = mk \"bench-real\" %s [ %s ];\nin [ root %s ]\n",
		nixQuote(filepath.Join(stage, "root")), strings.Join(all, " "), strings.Join(all, " "))
	if err := os.MkdirAll(filepath.Join(stage, "root", "etc"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stage, "root", "etc", "about"), []byte("the real fixture of bench/production_test.go\n"), 0o644); err != nil {
		b.Fatal(err)
	}

	// Registered before BuildClosure roots the outputs, so that it runs
	// after the roots are gone: the host store does not keep 200 MB per
	// benchmark run. Only the fixture's own paths are named.
	var outs []string
	b.Cleanup(func() {
		if len(outs) == 0 {
			return
		}
		args := append([]string{"--delete"}, outs...)
		if out, err := hostCommand("nix-store", args...).CombinedOutput(); err != nil {
			b.Logf("real fixture: removing its paths from the host store: %v\n%s", err, out)
		}
	})
	outs = testnode.BuildClosure(b, nix.String())
	fx.Root = outs[0]
	fx.Closure = testnode.Closure(b, fx.Root)
	if len(fx.Closure) != n+1 {
		b.Fatalf("real fixture: the closure of %s has %d paths, want %d", fx.Root, len(fx.Closure), n+1)
	}
	return fx
}

// group is files or directories that become one store path.
type group struct {
	name  string
	paths []string
}

// splitTree groups dir's entries, in name order, into store paths of at
// least realMinPart bytes; an entry above realMaxPart is split into its own
// entries likewise. budget > 0 takes, in name order, the entries that fit
// in that many bytes.
func splitTree(b *testing.B, dir string, budget int64) []group {
	b.Helper()
	var out []group
	var cur group
	var curSize, total int64
	flush := func() {
		if len(cur.paths) > 0 {
			out = append(out, cur)
		}
		cur, curSize = group{}, 0
	}
	var walk func(dir, prefix string)
	walk = func(dir, prefix string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			size := treeSize(p)
			if budget > 0 && total+size > budget {
				continue // what fits: Python's static library alone is larger
			}
			if e.IsDir() && size > realMaxPart {
				flush()
				walk(p, prefix+e.Name()+"-")
				flush()
				continue
			}
			if cur.name == "" {
				cur.name = prefix + e.Name()
			}
			cur.paths = append(cur.paths, p)
			curSize += size
			total += size
			if curSize >= realMinPart {
				flush()
			}
		}
	}
	walk(dir, "")
	flush()
	return out
}

// treeSize is the bytes of the regular files under p.
func treeSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// stageGroup copies the regular files, directories and symlinks under
// paths into dir (each path by its base name) and returns what it copied.
// Below scale 100 it keeps that share of the files, or with cut every file
// cut to that share of its bytes.
func stageGroup(b *testing.B, dir string, paths []string, scale int, cut bool) (files int, bytes int64) {
	b.Helper()
	type entry struct{ src, dst string }
	var list []entry
	for _, p := range paths {
		base := filepath.Dir(p)
		err := filepath.WalkDir(p, func(src string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(base, src)
			dst := filepath.Join(dir, rel)
			switch {
			case d.IsDir():
				return os.MkdirAll(dst, 0o755)
			case d.Type()&fs.ModeSymlink != 0, d.Type().IsRegular():
				list = append(list, entry{src, dst})
			}
			return nil // sockets, devices: not store material
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	kept := 0
	for i, e := range list {
		keep := cut || scale >= 100 || (i+1)*scale/100 > i*scale/100 || (i == len(list)-1 && kept == 0)
		if !keep {
			continue
		}
		kept++
		n, err := copyEntry(e.src, e.dst, scale, cut)
		if err != nil {
			b.Fatal(err)
		}
		files++
		bytes += n
	}
	return files, bytes
}

// copyEntry copies a symlink or a regular file (its first scale percent
// with cut), keeping the executable bit.
func copyEntry(src, dst string, scale int, cut bool) (int64, error) {
	fi, err := os.Lstat(src)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return 0, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(src)
		if err != nil {
			return 0, err
		}
		return 0, os.Symlink(target, dst)
	}
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	mode := os.FileMode(0o644)
	if fi.Mode()&0o100 != 0 {
		mode = 0o755
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return 0, err
	}
	size := fi.Size()
	if cut && scale < 100 {
		size = max(size*int64(scale)/100, 1)
	}
	n, err := io.CopyN(out, in, size)
	if err == io.EOF {
		err = nil
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return n, err
}

// largestLibraries picks shared libraries (*.so*) of dir, largest first,
// each at most most bytes, until budget; one file per inode (hard links).
func largestLibraries(b *testing.B, dir string, budget, most int64) []string {
	b.Helper()
	type lib struct {
		path string
		size int64
	}
	var libs []lib
	seen := map[uint64]bool{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.Contains(e.Name(), ".so") {
			continue
		}
		fi, err := e.Info()
		if err != nil || fi.Size() > most {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				continue
			}
			seen[st.Ino] = true
		}
		libs = append(libs, lib{filepath.Join(dir, e.Name()), fi.Size()})
	}
	sort.Slice(libs, func(i, j int) bool {
		if libs[i].size != libs[j].size {
			return libs[i].size > libs[j].size
		}
		return libs[i].path < libs[j].path
	})
	var out []string
	var total int64
	for _, l := range libs {
		if total+l.size > budget {
			continue
		}
		out = append(out, l.path)
		total += l.size
	}
	return out
}

// pythonStdlib is the newest /usr/lib/python3.N, or "".
func pythonStdlib() string {
	matches, _ := filepath.Glob("/usr/lib/python3.*")
	best, bestMinor := "", -1
	for _, m := range matches {
		minor, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(m), "python3."))
		if st, serr := os.Stat(filepath.Join(m, "os.py")); err == nil && serr == nil && !st.IsDir() && minor > bestMinor {
			best, bestMinor = m, minor
		}
	}
	return best
}

// multiarchLibDir is Debian's directory of this architecture's libraries.
func multiarchLibDir() string {
	triplet := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "386": "i386-linux-gnu"}[runtime.GOARCH]
	if triplet == "" {
		triplet = runtime.GOARCH + "-linux-gnu"
	}
	return filepath.Join("/usr/lib", triplet)
}

func toolDir(goroot string) string {
	return filepath.Join(goroot, "pkg", "tool", runtime.GOOS+"_"+runtime.GOARCH)
}

// storeSafe keeps the characters a store path name may hold.
func storeSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("+-._", r):
			return r
		}
		return '-'
	}, s)
}

// nixQuote quotes s as a Nix string literal.
func nixQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

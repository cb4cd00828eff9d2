package testnode

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// BuildClosure builds a Nix expression in the host store and returns the
// output paths in the order nix-build prints them (a list's order; an
// attribute set's sorted by name). expr must evaluate to a derivation, or a
// list or attribute set of derivations; there is no nixpkgs, so write them
// with builtins.derivation, builder = "/bin/sh" and PATH = "/usr/bin:/bin"
// (without PATH the builder gets PATH=/path-not-set). Substituters are
// disabled and the build runs without a sandbox. The outputs are rooted
// until the test ends. Make the derivations unique to the test (a nonce
// attribute) if other tests or runs must not share them.
func BuildClosure(t testing.TB, expr string) []string {
	t.Helper()
	testnix.Require(t)
	dir := shortTempDir(t, "tn-build-")
	file := filepath.Join(dir, "default.nix")
	if err := os.WriteFile(file, []byte(expr), 0o644); err != nil {
		t.Fatal(err)
	}
	out := mustRun(t, append(baseEnv(), "HOME="+dir), "nix-build", file,
		"--out-link", filepath.Join(dir, "result"),
		"--option", "substituters", "",
		"--option", "sandbox", "false",
		"--max-jobs", "4")
	paths := lines(out)
	if len(paths) == 0 {
		t.Fatalf("testnode: nix-build of %s printed no output paths", file)
	}
	return paths
}

// Closure returns the closure of paths in the host store (`nix-store -qR`),
// dependencies before the paths that refer to them.
func Closure(t testing.TB, paths ...string) []string {
	t.Helper()
	return lines(mustRun(t, baseEnv(), "nix-store", append([]string{"-qR"}, paths...)...))
}

// Fixture is a closure of test store paths in the host store, made by Chain.
//
// Layout: Levels[0] are leaves; each path of level i > 0 refers to every path
// of level i-1. Every level path is a directory holding
//
//	id     "<name> <nonce> <level> <index>\n" (unique content)
//	data   DataSize deterministic pseudo-random bytes (absent if DataSize is 0)
//	refs   the paths of the level below, one per line (level > 0)
//	link   a symlink to the path of the level below with the same index (level > 0)
//
// Root is an input-addressed directory that refers to every path of the top
// level, with refs and link likewise, and bin/<name>, a shell script that
// prints the id file of Levels[0][0] (so it reads data from another store
// path). Every path is input-addressed, so a cache must sign it.
type Fixture struct {
	Name     string     // the name given to Chain, made store-safe
	Nonce    string     // random, unique to this Fixture
	Root     string     // the path whose closure is everything
	Roots    []string   // []string{Root}
	Levels   [][]string // Levels[level][index]
	Closure  []string   // every path (nix-store -qR Root), dependencies first
	Program  string     // Root + "/bin/" + Name
	Message  string     // what Program prints
	Link     string     // Root + "/link", a symlink to Levels[depth-1][0]
	DataSize int        // bytes of the data file of each level path
}

// Chain builds a Fixture named name: depth levels (≥ 1) of width paths
// (≥ 1) each, each with bytes bytes of data, plus the root. Content comes
// from a seed derived from the name and a fresh random nonce, so each call
// makes new paths; the data is pseudo-random, so it does not compress much.
func Chain(t testing.TB, name string, depth, width, bytes int) *Fixture {
	t.Helper()
	testnix.Require(t)
	if depth < 1 || width < 1 || bytes < 0 {
		t.Fatalf("testnode: Chain(%q, depth=%d, width=%d, bytes=%d): depth and width must be ≥ 1", name, depth, width, bytes)
	}
	var nb [6]byte
	if _, err := rand.Read(nb[:]); err != nil {
		t.Fatal(err)
	}
	fx := &Fixture{Name: storeName(name, 40), Nonce: hex.EncodeToString(nb[:]), DataSize: bytes}
	src := shortTempDir(t, "tn-src-")
	seed := sha256.Sum256([]byte(t.Name() + "\x00" + fx.Name + "\x00" + fx.Nonce))

	var nix strings.Builder
	fmt.Fprintf(&nix, `let
  sys = builtins.currentSystem;
  nonce = %s;
  mk = name: id: data: below: link: derivation {
    inherit name id nonce below;
    system = sys;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    data = if data == null then "" else data;
    link = if link == null then "" else link;
    args = [ "-c" ''
      set -e
      mkdir $out
      printf '%%s\n' "$id" > $out/id
      if [ -n "$data" ]; then cp "$data" $out/data; fi
      if [ -n "$below" ]; then printf '%%s\n' $below > $out/refs; fi
      if [ -n "$link" ]; then ln -s "$link" $out/link; fi
    '' ];
  };
`, nixString(fx.Nonce))
	varName := func(level, i int) string { return fmt.Sprintf("p_%d_%d", level, i) }
	for level := 0; level < depth; level++ {
		var below []string
		if level > 0 {
			for i := 0; i < width; i++ {
				below = append(below, varName(level-1, i))
			}
		}
		for i := 0; i < width; i++ {
			data := "null"
			if bytes > 0 {
				f := filepath.Join(src, fmt.Sprintf("%d-%d", level, i), "data")
				writeData(t, f, seed, level, i, bytes)
				data = "(/. + " + nixString(f) + ")"
			}
			link := "null"
			if level > 0 {
				link = varName(level-1, i)
			}
			fmt.Fprintf(&nix, "  %s = mk %s %s %s [ %s ] %s;\n", varName(level, i),
				nixString(fmt.Sprintf("tn-%s-%d-%d", fx.Name, level, i)),
				nixString(fmt.Sprintf("%s %s %d %d", fx.Name, fx.Nonce, level, i)),
				data, strings.Join(below, " "), link)
		}
	}
	var top []string
	for i := 0; i < width; i++ {
		top = append(top, varName(depth-1, i))
	}
	fmt.Fprintf(&nix, `  root = derivation {
    name = %s;
    prog = %s;
    inherit nonce;
    system = sys;
    builder = "/bin/sh";
    PATH = "/usr/bin:/bin";
    leaf = p_0_0;
    top = [ %s ];
    link = %s;
    args = [ "-c" ''
      set -e
      mkdir -p $out/bin
      printf '#!/bin/sh\nexec cat %%s/id\n' "$leaf" > $out/bin/$prog
      chmod 0755 $out/bin/$prog
      printf '%%s\n' $top > $out/refs
      ln -s "$link" $out/link
    '' ];
  };
in [ root %s ]
`, nixString("tn-"+fx.Name), nixString(fx.Name), strings.Join(top, " "), top[0], allVars(depth, width, varName))

	outs := BuildClosure(t, nix.String())
	fx.Root = outs[0]
	fx.Roots = []string{fx.Root}
	fx.Program = fx.Root + "/bin/" + fx.Name
	fx.Link = fx.Root + "/link"
	fx.Message = fmt.Sprintf("%s %s 0 0\n", fx.Name, fx.Nonce)
	fx.Levels = make([][]string, depth)
	re := regexp.MustCompile(`-tn-` + regexp.QuoteMeta(fx.Name) + `-(\d+)-(\d+)$`)
	for _, p := range outs[1:] {
		m := re.FindStringSubmatch(p)
		if m == nil {
			t.Fatalf("testnode: unexpected output %s", p)
		}
		level, _ := strconv.Atoi(m[1])
		fx.Levels[level] = append(fx.Levels[level], p)
	}
	for level := range fx.Levels {
		sort.Slice(fx.Levels[level], func(a, b int) bool {
			return indexOf(re, fx.Levels[level][a]) < indexOf(re, fx.Levels[level][b])
		})
		if len(fx.Levels[level]) != width {
			t.Fatalf("testnode: level %d has %d paths, want %d", level, len(fx.Levels[level]), width)
		}
	}
	fx.Closure = Closure(t, fx.Root)
	if want := depth*width + 1; len(fx.Closure) != want {
		t.Fatalf("testnode: closure of %s has %d paths, want %d: %v", fx.Root, len(fx.Closure), want, fx.Closure)
	}
	return fx
}

func indexOf(re *regexp.Regexp, p string) int {
	i, _ := strconv.Atoi(re.FindStringSubmatch(p)[2])
	return i
}

func allVars(depth, width int, name func(int, int) string) string {
	var v []string
	for level := 0; level < depth; level++ {
		for i := 0; i < width; i++ {
			v = append(v, name(level, i))
		}
	}
	return strings.Join(v, " ")
}

// writeData writes n deterministic pseudo-random bytes for (level, i).
func writeData(t testing.TB, file string, seed [32]byte, level, i, n int) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	binary.LittleEndian.PutUint32(seed[0:], binary.LittleEndian.Uint32(seed[0:])^uint32(level))
	binary.LittleEndian.PutUint32(seed[4:], binary.LittleEndian.Uint32(seed[4:])^uint32(i))
	r := mrand.NewChaCha8(seed)
	buf := make([]byte, n)
	_, _ = r.Read(buf)
	if err := os.WriteFile(file, buf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// nixString quotes s as a Nix string literal.
func nixString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `$`, `\$`, "\n", `\n`, "\r", `\r`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}

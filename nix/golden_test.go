package nix_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/aurora"
	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the installed Nix")

// storeHashRE finds the hash part of store paths.
var storeHashRE = regexp.MustCompile(`/nix/store/[0-9a-z]{32}-`)

// TestGoldenJSON checks that the installed Nix writes the same job JSON,
// byte for byte, as the one the files in testdata/golden were made with:
// run under every Nix of the test matrix, it shows that the JSON does not
// depend on the Nix that builds it (Nix 2.8 and 2.12+ print floats
// differently). Store hashes are masked: they depend on the system and on
// every input of a root, not on Nix's printing, and would make the files
// change with any edit of an example. After an intended change of the JSON,
// rewrite the files with `go test ./nix -run TestGoldenJSON -update` and
// review the diff.
func TestGoldenJSON(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	version := strings.TrimSpace(mustNix(t, "nix-instantiate", "--version"))
	docs := map[string]string{}
	for _, ex := range examples {
		file, args := ex.nixArgs(t)
		// Read-write: an example may read a file it builds (templateFile
		// reads a built template), which a fresh store does not have yet.
		var doc string
		evalJSON(t, &doc, append(append([]string{"--read-write-mode", file, "-A", "json"}, noSubstituters...), args...)...)
		docs["example-"+ex.name] = doc
	}
	// The library's jobs; "big" only repeats one cmdline argument.
	var jobs map[string]string
	evalJSON(t, &jobs, "-E", `builtins.mapAttrs (name: j: j.json) (removeAttrs (import ./nix/tests/accept.nix).jobs [ "big" ])`)
	if len(jobs) == 0 {
		t.Fatal("nix/tests/accept.nix has no jobs")
	}
	for name, doc := range jobs {
		docs["job-"+name] = doc
	}
	var numbers struct {
		Job    string `json:"job"`
		Fields string `json:"fields"`
	}
	evalJSON(t, &numbers, "--strict", "nix/tests/numbers.nix")
	docs["numbers-job"] = numbers.Job
	docs["numbers-fields"] = numbers.Fields

	dir := filepath.Join("testdata", "golden")
	if *update {
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, doc := range docs {
		// What the library builds, Aurora's client must load (the rules of
		// package aurora): a job the library can write but Aurora refuses
		// is a bug of the library.
		if name != "numbers-fields" {
			if _, err := aurora.ValidateDocument([]byte(doc)); err != nil {
				t.Errorf("%s: Aurora's client would refuse what the library built: %v", name, err)
			}
		}
		got := storeHashRE.ReplaceAllString(doc, "/nix/store/HASH-")
		file := filepath.Join(dir, name+".json")
		if *update {
			if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("%s: %v (write it with -update)", name, err)
			continue
		}
		if diff := firstDifference(want, []byte(got)); diff != "" {
			t.Errorf("%s differs from %s under %s: %s", name, file, version, diff)
		}
	}
	if !*update {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if _, ok := docs[strings.TrimSuffix(e.Name(), ".json")]; !ok {
				t.Errorf("%s has no job: remove it (or run -update)", filepath.Join(dir, e.Name()))
			}
		}
	}
}

// TestNumbersReadBack checks that every float the library writes reads back
// as the same double, in Nix and in Go, whatever Nix prints it.
func TestNumbersReadBack(t *testing.T) {
	testnix.Require(t)
	t.Parallel()

	var numbers struct {
		Fields      string `json:"fields"`
		NotReadBack []any  `json:"notReadBack"`
	}
	evalJSON(t, &numbers, "--strict", "nix/tests/numbers.nix")
	if len(numbers.NotReadBack) != 0 {
		t.Errorf("%d values do not read back as themselves: %v", len(numbers.NotReadBack), numbers.NotReadBack)
	}
	lines := strings.Split(strings.TrimSuffix(numbers.Fields, "\n"), "\n")
	if len(lines) < 250 {
		t.Fatalf("only %d lines of numbers", len(lines))
	}
	for _, line := range lines {
		for _, text := range strings.Split(strings.Trim(line, "[]"), ",") {
			if _, err := strconv.ParseFloat(text, 64); err != nil || strings.ContainsAny(text, "eE+") || strings.HasSuffix(text, ".0") {
				t.Errorf("%q is not a plain JSON number: %v", text, err)
			}
		}
	}
}

// firstDifference describes where got first differs from want, with some
// context, or returns "" when they are equal.
func firstDifference(want, got []byte) string {
	if bytes.Equal(want, got) {
		return ""
	}
	i := 0
	for i < len(want) && i < len(got) && want[i] == got[i] {
		i++
	}
	excerpt := func(b []byte) string {
		from, to := max(0, i-40), min(len(b), i+40)
		return fmt.Sprintf("%q", b[from:to])
	}
	return fmt.Sprintf("at byte %d (%d bytes, want %d): got ...%s..., want ...%s...", i, len(got), len(want), excerpt(got), excerpt(want))
}

package nixgen

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
)

// tricky are strings whose Nix form needs care: interpolation, both kinds
// of quotes, backslashes, indentation and the edges of indented strings.
var tricky = []string{
	"", "plain", `a "quoted" \ back\\slash`, "${HOME}", "$${HOME}", "$$${x}", "\\${x}", "$", "a$", "{{thermos.ports[http]}}",
	"line\n", "two\nlines", "a\n  b\n", "  all\n  indented\n", "\n", "\n\n", "x\n\ny\n", "x\n   \ny", "x\n   ",
	"it''s\n", "'''\nx", "''''\nx\n", "''${x}\ny", "'${x}\ny", "x\ny'", "''\\n\nx", "tab\there\nx", "\ttabbed\nx\n",
	"${a}\n${b}\n", "$\n{x}\n", "a\r\nb", "é ünïcode\nok\n", "end with $\nx$",
}

// TestStringsReadBack evaluates every string as Nix writes it, as an
// indented string where one is used and as a "..." string always.
func TestStringsReadBack(t *testing.T) {
	testnix.Require(t)
	var b strings.Builder
	b.WriteString("[\n")
	indentedUsed := 0
	for _, s := range tricky {
		b.WriteString("  (" + nixString(s) + ")\n")
		n := stringNode(s)
		if _, ok := n.(indented); ok {
			indentedUsed++
		}
		b.WriteString("  (" + render(n, "  ") + ")\n")
	}
	b.WriteString("]\n")
	if indentedUsed < 10 {
		t.Fatalf("only %d strings were written as indented strings", indentedUsed)
	}
	file := filepath.Join(t.TempDir(), "strings.nix")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("nix-instantiate", "--eval", "--strict", "--json", file).Output()
	if err != nil {
		t.Fatalf("nix-instantiate: %v\n%s", err, b.String())
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	for i, s := range tricky {
		if got[2*i] != s {
			t.Errorf("%q as \"...\" (%s) reads back as %q", s, nixString(s), got[2*i])
		}
		if got[2*i+1] != s {
			t.Errorf("%q as %s reads back as %q", s, render(stringNode(s), "  "), got[2*i+1])
		}
	}
}

func TestSizes(t *testing.T) {
	for n, want := range map[int64]string{
		1 << 20: "1 * MB", 64 << 20: "64 * MB", 2 << 30: "2 * GB", 1536 << 20: "1536 * MB",
		3 << 40: "3 * TB", 1024: "1 * KB", 1000: "1000", 0: "0", 100<<20 + 1: "104857601",
	} {
		if got := render(sizeNode(n), ""); got != want {
			t.Errorf("sizeNode(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestFetchComment(t *testing.T) {
	for cmd, want := range map[string]string{
		"curl -O http://x/y && ./y":           "curl",
		"/usr/bin/wget x; hadoop fs -get a b": "wget, hadoop fs",
		"git clone https://x && make":         "git clone",
		"{{packer}} && packer fetch x":        "packer",
		"echo curly; ./run --fetch-size 3":    "",
		"/nix/store/abc-curl/bin/app":         "",
	} {
		got := fetchComment(cmd)
		if want == "" {
			if got != "" {
				t.Errorf("%q: comment %q, want none", cmd, got)
			}
			continue
		}
		if !strings.Contains(got, "("+want+")") {
			t.Errorf("%q: comment %q, want (%s)", cmd, got, want)
		}
	}
}

func TestBindingNames(t *testing.T) {
	taken := map[string]bool{}
	for _, c := range []struct{ name, want string }{
		{"server", "server"}, {"web.v2", "web_v2"}, {"order", "order_process"}, {"in", "in_process"},
		{"2nd", "p_2nd"}, {"web_v2", "web_v2_2"}, {"MB", "MB_process"},
	} {
		got := bindingName(c.name, taken)
		taken[got] = true
		if got != c.want {
			t.Errorf("bindingName(%q) = %q, want %q", c.name, got, c.want)
		}
	}
}

func TestLibraryPath(t *testing.T) {
	for in, want := range map[string]string{
		"": DefaultLibrary, "nix-aurora/nix": "./nix-aurora/nix", "../nix-aurora/nix/": "../nix-aurora/nix",
		"/opt/nix-aurora/nix": "/opt/nix-aurora/nix", "<nix-aurora/nix>": "<nix-aurora/nix>", "..": "../.",
	} {
		got, err := libraryPath(in)
		if err != nil || got != want {
			t.Errorf("libraryPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"my lib", "a//b", "<a b>", `x"y`} {
		if _, err := libraryPath(bad); err == nil {
			t.Errorf("libraryPath(%q) accepted", bad)
		}
	}
}

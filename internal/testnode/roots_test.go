package testnode

import "testing"

// TestParseRoot: lines of `nix-store --gc --print-roots` as Nix 2.8.0,
// 2.26.3 and 2.34.8 printed them for the same roots (one in a directory
// named `dir "q" \b`).
func TestParseRoot(t *testing.T) {
	const path = "/nix/store/xp0dpr9yz5h0fk5c5lpj7zzqjbdh3w8c-f"
	odd := Root{Link: `/tmp/cap/dir "q" \b/r 2`, Path: path}
	plain := Root{Link: "/tmp/cap/gc/r1", Path: path}
	for _, c := range []struct {
		version, line string
		want          Root
	}{
		{"2.8.0", `/tmp/cap/dir "q" \b/r 2 -> ` + path, odd},
		{"2.8.0", "/tmp/cap/gc/r1 -> " + path, plain},
		{"2.26.3", `/tmp/cap/dir "q" \b/r 2 -> ` + path, odd},
		{"2.26.3", "/tmp/cap/gc/r1 -> " + path, plain},
		{"2.34.8", `"/tmp/cap/dir \"q\" \\b/r 2" -> ` + path, odd},
		{"2.34.8", `"/tmp/cap/gc/r1" -> ` + path, plain},
		{"2.34.8", `"{temp:4242}" -> ` + path, Root{Link: "{temp:4242}", Path: path}},
		{"2.8.0", "/tmp/a -> b/l -> " + path, Root{Link: "/tmp/a -> b/l", Path: path}},
	} {
		got, ok := parseRoot(c.line)
		if !ok || got != c.want {
			t.Errorf("Nix %s: parseRoot(%q) = %+v, %v; want %+v", c.version, c.line, got, ok, c.want)
		}
	}
	for _, line := range []string{"", "finding garbage collector roots...", `"/tmp/unterminated -> ` + path, `"/tmp/l"` + path, "/tmp/l -> ", " -> " + path} {
		if got, ok := parseRoot(line); ok {
			t.Errorf("parseRoot(%q) = %+v, want no root", line, got)
		}
	}
}

package testnode

import "strings"

// parseRoot reads one line of `nix-store --gc --print-roots`, "LINK ->
// PATH". Nix 2.34 prints LINK as C++ prints a std::filesystem::path: in
// double quotes, with `"` and `\` escaped by a backslash; older versions
// print it bare. A bare link may itself contain " -> " (a store path
// cannot), so it ends at the last one.
func parseRoot(line string) (Root, bool) {
	if rest, ok := strings.CutPrefix(line, `"`); ok {
		var link strings.Builder
		for i := 0; i < len(rest); i++ {
			switch c := rest[i]; {
			case c == '\\' && i+1 < len(rest):
				i++
				link.WriteByte(rest[i])
			case c == '"':
				p, ok := strings.CutPrefix(rest[i+1:], " -> ")
				if !ok || p == "" {
					return Root{}, false
				}
				return Root{Link: link.String(), Path: p}, true
			default:
				link.WriteByte(c)
			}
		}
		return Root{}, false // no closing quote
	}
	i := strings.LastIndex(line, " -> ")
	if i <= 0 || i+len(" -> ") == len(line) {
		return Root{}, false
	}
	return Root{Link: line[:i], Path: line[i+len(" -> "):]}, true
}

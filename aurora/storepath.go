package aurora

import "regexp"

// storePathRE is a store path: /nix/store/, 32 characters of Nix's base-32
// alphabet, "-", and a name ([A-Za-z0-9+._?=-]), up to the first character
// that cannot be in a name (so /nix/store/HASH-foo/bin/foo gives
// /nix/store/HASH-foo).
var storePathRE = regexp.MustCompile(`/nix/store/[0123456789abcdfghijklmnpqrsvwxyz]{32}-[A-Za-z0-9+._?=-]+`)

// StorePaths returns the Nix store paths a cmdline mentions, in order of
// first appearance, each once.
func StorePaths(cmdline string) []string {
	var paths []string
	seen := map[string]bool{}
	for _, p := range storePathRE.FindAllString(cmdline, -1) {
		if !seen[p] {
			seen[p] = true
			paths = append(paths, p)
		}
	}
	return paths
}

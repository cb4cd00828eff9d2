package store

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

const (
	storeDir    = "/nix/store/"
	hashPartLen = 32
	maxNameLen  = 211
)

// ValidatePath checks that p is a store path every Nix daemon parses:
// /nix/store/, 32 characters of Nix's base-32 alphabet, '-', and a name of 1
// to 211 characters from [A-Za-z0-9+._?=-]. Nix 2.8 accepts any name
// starting with '.', but newer daemons refuse "." and "..", alone or as the
// first dash-separated component; those are refused here too, since a path a
// daemon cannot parse costs the whole connection.
func ValidatePath(p string) error {
	if !strings.HasPrefix(p, storeDir) {
		return fmt.Errorf("invalid store path %q: not in %s", p, strings.TrimSuffix(storeDir, "/"))
	}
	base := p[len(storeDir):]
	if len(base) < hashPartLen+2 || base[hashPartLen] != '-' {
		return fmt.Errorf("invalid store path %q: want %s<32-character hash>-<name>", p, storeDir)
	}
	for i := 0; i < hashPartLen; i++ {
		if !nixbase32.Is(base[i]) {
			return fmt.Errorf("invalid store path %q: hash contains %q, which is not in Nix's base-32 alphabet", p, base[i])
		}
	}
	if err := checkName(base[hashPartLen+1:]); err != nil {
		return fmt.Errorf("invalid store path %q: %v", p, err)
	}
	return nil
}

func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case len(name) > maxNameLen:
		return fmt.Errorf("name longer than %d characters", maxNameLen)
	case name == "." || name == ".." || strings.HasPrefix(name, ".-") || strings.HasPrefix(name, "..-"):
		return fmt.Errorf("name must not be %q or %q, nor start with either followed by '-'", ".", "..")
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar(name[i]) {
			return fmt.Errorf("name contains illegal character %q", name[i])
		}
	}
	return nil
}

func isNameChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
		strings.IndexByte("+-._?=", c) >= 0
}

// validateDerivedPath checks a BuildPaths/QueryMissing target: a store path,
// or a derivation with outputs, "/nix/store/…-x.drv!out1,out2" ("!*" for
// all outputs). The wire form uses '!', whatever newer CLIs print.
func validateDerivedPath(s string) error {
	drv, outs, built := strings.Cut(s, "!")
	if err := ValidatePath(drv); err != nil {
		return err
	}
	if !built {
		return nil
	}
	if !strings.HasSuffix(drv, ".drv") {
		return fmt.Errorf("invalid derived path %q: outputs given for a path that is not a derivation", s)
	}
	if outs == "*" {
		return nil
	}
	for _, o := range strings.Split(outs, ",") {
		if o == "" || strings.IndexFunc(o, func(r rune) bool { return r > 0x7f || !isNameChar(byte(r)) }) >= 0 {
			return fmt.Errorf("invalid derived path %q: bad output name %q", s, o)
		}
	}
	return nil
}

func validatePaths(paths []string) error {
	for _, p := range paths {
		if err := ValidatePath(p); err != nil {
			return err
		}
	}
	return nil
}

// validateLink checks the path of an indirect GC root and returns it in the
// form the daemon registers: absolute and clean (Nix canonicalises it the
// same way, and the name of its gcroots/auto entry hashes that form).
func validateLink(link string) (string, error) {
	if !filepath.IsAbs(link) {
		return "", fmt.Errorf("indirect root %q: must be an absolute path", link)
	}
	if strings.IndexByte(link, 0) >= 0 {
		return "", fmt.Errorf("indirect root %q: contains a NUL byte", link)
	}
	return filepath.Clean(link), nil
}

// nix32 encodes b in Nix's base-32 (go-nix's encoder, checked against
// nix-hash).
func nix32(b []byte) string { return nixbase32.EncodeToString(b) }

// hexToNix32 turns a base16 sha256 (as the daemon sends NAR hashes) into
// Nix's "sha256:<nix32>" form.
func hexToNix32(h string) (string, error) {
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != 32 {
		return "", fmt.Errorf("NAR hash %q is not a base16 sha256", h)
	}
	return "sha256:" + nix32(b), nil
}

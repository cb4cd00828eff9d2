package binarycache

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/nix-aurora/nix-aurora/store"
)

// StoreDir is the only store directory this package serves.
const StoreDir = "/nix/store"

// MaxNarInfoSize bounds the narinfo files this package reads.
const MaxNarInfoSize = 1 << 20

// NarInfo is the contents of a `.narinfo` file: what a binary cache says
// about one store path.
type NarInfo struct {
	StorePath   string // full store path
	URL         string // of the (compressed) NAR, relative to the cache
	Compression string // "bzip2" when the file does not say
	FileHash    string // "sha256:<nix32>" of the file at URL; "" if absent
	FileSize    uint64 // 0 if absent
	NarHash     string // "sha256:<nix32>" of the NAR
	NarSize     uint64
	References  []string // basenames, sorted, without duplicates
	Deriver     string   // basename; "" when unknown
	System      string
	Sigs        []string // "keyname:base64", sorted, without duplicates
	CA          string   // content address; "" when input-addressed
}

// HashPart returns the 32-character hash part of a store path, or "" if p
// is not a store path.
func HashPart(p string) string {
	if store.ValidatePath(p) != nil {
		return ""
	}
	return p[len(StoreDir)+1 : len(StoreDir)+33]
}

// ParseNarInfo parses a narinfo as tolerantly as Nix 2.8 does: lines are
// "Key: value" (a colon and exactly one space), unknown keys are ignored,
// Compression defaults to bzip2, "unknown-deriver" means no deriver, Sig
// may repeat. StorePath, URL, NarHash and a non-zero NarSize are required.
// Hashes may be in any form Nix accepts (sha256:nix32, sha256:base16,
// sha256:base64, SRI) and are normalised to sha256:nix32. Unlike Nix it
// also accepts blank lines and a missing final newline.
//
// ParseNarInfo checks the narinfo only for itself; the caller checks that
// it describes the path it asked for (CheckPath) and verifies signatures
// (Verify).
func ParseNarInfo(data []byte) (*NarInfo, error) {
	if len(data) > MaxNarInfoSize {
		return nil, fmt.Errorf("%w: %d bytes is more than %d", ErrBadNarInfo, len(data), MaxNarInfoSize)
	}
	ni := &NarInfo{}
	var haveRefs, haveCA, haveNarSize bool
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadNarInfo, fmt.Sprintf(format, args...))
	}
	// An iterator, not a slice of lines: a narinfo of many short lines
	// would cost 16 bytes a line on top of its text.
	lineNo := -1
	for line := range strings.SplitSeq(string(data), "\n") {
		lineNo++
		if line == "" {
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			return nil, bad("line %d has no colon: %q", lineNo+1, clip(line))
		}
		key := line[:colon]
		rest := line[colon+1:]
		if !strings.HasPrefix(rest, " ") {
			if knownKey(key) {
				return nil, bad("line %d: %q must be followed by \": \"", lineNo+1, key+":")
			}
			continue
		}
		val := rest[1:]
		var err error
		switch key {
		case "StorePath":
			if err = store.ValidatePath(val); err != nil {
				return nil, bad("StorePath: %v", err)
			}
			ni.StorePath = val
		case "URL":
			ni.URL = val
		case "Compression":
			ni.Compression = val
		case "FileHash":
			if ni.FileHash, err = normaliseHash(val); err != nil {
				return nil, bad("FileHash: %v", err)
			}
		case "FileSize":
			if ni.FileSize, err = strconv.ParseUint(val, 10, 64); err != nil {
				return nil, bad("FileSize %q is not a number", clip(val))
			}
		case "NarHash":
			if ni.NarHash, err = normaliseHash(val); err != nil {
				return nil, bad("NarHash: %v", err)
			}
		case "NarSize":
			if ni.NarSize, err = strconv.ParseUint(val, 10, 64); err != nil {
				return nil, bad("NarSize %q is not a number", clip(val))
			}
			haveNarSize = true
		case "References":
			if haveRefs && len(ni.References) > 0 {
				return nil, bad("References given twice")
			}
			haveRefs = true
			for _, r := range strings.Split(val, " ") {
				if r == "" {
					continue
				}
				if err := store.ValidatePath(StoreDir + "/" + r); err != nil {
					return nil, bad("References: %v", err)
				}
				ni.References = append(ni.References, r)
			}
		case "Deriver":
			if val != "unknown-deriver" {
				if err := store.ValidatePath(StoreDir + "/" + val); err != nil {
					return nil, bad("Deriver: %v", err)
				}
				ni.Deriver = val
			}
		case "System":
			ni.System = val
		case "Sig":
			ni.Sigs = append(ni.Sigs, val)
		case "CA":
			if haveCA {
				return nil, bad("CA given twice")
			}
			haveCA = true
			ni.CA = val
		}
	}
	switch {
	case ni.StorePath == "":
		return nil, bad("no StorePath")
	case ni.URL == "":
		return nil, bad("no URL")
	case ni.NarHash == "":
		return nil, bad("no NarHash")
	case !haveNarSize || ni.NarSize == 0:
		return nil, bad("NarSize missing or zero")
	}
	if ni.Compression == "" {
		ni.Compression = "bzip2"
	}
	ni.References = sortedUnique(ni.References)
	ni.Sigs = sortedUnique(ni.Sigs)
	return ni, nil
}

func knownKey(k string) bool {
	switch k {
	case "StorePath", "URL", "Compression", "FileHash", "FileSize", "NarHash", "NarSize",
		"References", "Deriver", "System", "Sig", "CA":
		return true
	}
	return false
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

func sortedUnique(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	slices.Sort(ss)
	return slices.Compact(ss)
}

// CheckPath checks that the narinfo describes storePath.
func (ni *NarInfo) CheckPath(storePath string) error {
	if ni.StorePath != storePath {
		return fmt.Errorf("%w: it is for %s, not %s", ErrBadNarInfo, ni.StorePath, storePath)
	}
	return nil
}

// ReferencePaths returns the references as full store paths, sorted.
func (ni *NarInfo) ReferencePaths() []string {
	out := make([]string, len(ni.References))
	for i, r := range ni.References {
		out[i] = StoreDir + "/" + r
	}
	slices.Sort(out)
	return out
}

// Fingerprint returns what signatures sign:
// "1;<StorePath>;<NarHash as sha256:nix32>;<NarSize>;<sorted full references joined by ,>".
func (ni *NarInfo) Fingerprint() string {
	return "1;" + ni.StorePath + ";" + ni.NarHash + ";" + strconv.FormatUint(ni.NarSize, 10) + ";" +
		strings.Join(ni.ReferencePaths(), ",")
}

// String serialises the narinfo as Nix writes it. References is always
// written, with its space, even when empty.
func (ni *NarInfo) String() string {
	var b bytes.Buffer
	kv := func(k, v string) { b.WriteString(k + ": " + v + "\n") }
	kv("StorePath", ni.StorePath)
	kv("URL", ni.URL)
	comp := ni.Compression
	if comp == "" {
		comp = "bzip2"
	}
	kv("Compression", comp)
	if ni.FileHash != "" {
		kv("FileHash", ni.FileHash)
	}
	if ni.FileSize != 0 {
		kv("FileSize", strconv.FormatUint(ni.FileSize, 10))
	}
	kv("NarHash", ni.NarHash)
	kv("NarSize", strconv.FormatUint(ni.NarSize, 10))
	refs := sortedUnique(slices.Clone(ni.References))
	kv("References", strings.Join(refs, " "))
	if ni.Deriver != "" {
		kv("Deriver", ni.Deriver)
	}
	if ni.System != "" {
		kv("System", ni.System)
	}
	for _, s := range sortedUnique(slices.Clone(ni.Sigs)) {
		kv("Sig", s)
	}
	if ni.CA != "" {
		kv("CA", ni.CA)
	}
	return b.String()
}

// narDigest returns the NAR's sha256.
func (ni *NarInfo) narDigest() ([]byte, error) { return sha256Digest(ni.NarHash) }

// normaliseHash parses a sha256 hash in any form Nix accepts
// ("sha256:" + nix32, base16 or base64, or SRI "sha256-" + base64) and
// returns it as "sha256:<nix32>".
func normaliseHash(s string) (string, error) {
	d, err := parseSHA256(s)
	if err != nil {
		return "", err
	}
	return "sha256:" + nixbase32.EncodeToString(d), nil
}

func parseSHA256(s string) ([]byte, error) {
	var enc string
	switch {
	case strings.HasPrefix(s, "sha256:"):
		enc = s[len("sha256:"):]
		switch len(enc) {
		case 64:
			return hex.DecodeString(enc)
		case 52:
			if err := nixbase32.ValidateString(enc); err != nil {
				return nil, fmt.Errorf("hash %q: %v", clip(s), err)
			}
			return nixbase32.DecodeString(enc)
		case 44:
		default:
			return nil, fmt.Errorf("hash %q has the wrong length for sha256", clip(s))
		}
	case strings.HasPrefix(s, "sha256-"):
		enc = s[len("sha256-"):]
	default:
		return nil, fmt.Errorf("hash %q is not a sha256 hash (want sha256:… or sha256-…)", clip(s))
	}
	d, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(d) != sha256.Size {
		return nil, fmt.Errorf("hash %q: bad base64", clip(s))
	}
	return d, nil
}

func sha256Digest(s string) ([]byte, error) {
	d, err := parseSHA256(s)
	if err != nil {
		return nil, err
	}
	if len(d) != sha256.Size {
		return nil, fmt.Errorf("hash %q has the wrong length", clip(s))
	}
	return d, nil
}

func nix32(b []byte) string { return nixbase32.EncodeToString(b) }

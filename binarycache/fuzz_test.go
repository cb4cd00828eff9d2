package binarycache

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// Narinfos Nix 2.8 wrote with `nix copy --to file://…?compression=xz&secret-key=…`.
const (
	realNarInfoApp = `StorePath: /nix/store/hyky7p0bkf5hlxyx8gj0nbk9x345sk2m-seed-app
URL: nar/02016acq1gvzys4qf7ldwi2f1akkic0zfmvnnghn19w3sxb7d8h8.nar.xz
Compression: xz
FileHash: sha256:02016acq1gvzys4qf7ldwi2f1akkic0zfmvnnghn19w3sxb7d8h8
FileSize: 212
NarHash: sha256:1lyz8kz2i4g6wcj7n3zkpcw2pqh66fyr1fb0xr6582a0alqcgnq4
NarSize: 336
References: mf2zhgh71jrgnad3zp062i6lc7pvazhd-seed-dep
Deriver: rby45lpcfpg05dvcnbdy52cfy7mzsvzd-seed-app.drv
Sig: seed-key-1:2MGQkaX4MyMR45V17Lv8cPgBiZKPHNUxsIz5bhVYP3gUU31H2Ox6C28SRFM7Z3UC2YC3KjooBaHjFfCIE6CTAQ==
`
	realNarInfoDep = `StorePath: /nix/store/mf2zhgh71jrgnad3zp062i6lc7pvazhd-seed-dep
URL: nar/1xsjkazpfgyyy38br89kz2plvdb4dkqcjl5mh0n2py3ndf0sc48j.nar.xz
Compression: xz
FileHash: sha256:1xsjkazpfgyyy38br89kz2plvdb4dkqcjl5mh0n2py3ndf0sc48j
FileSize: 128
NarHash: sha256:00kjynz8n03652qccs76ivsvark3pr3dfr6w1ba3x7bx83kcknvv
NarSize: 120
References: 
Deriver: 3dhwwpms4wg8r0zpag3i71nimb08mcxc-seed-dep.drv
Sig: seed-key-1:BOgw6rrnZ8egc3iAYaiEd4RmOnW6lpSPWp8KxEpC7XmG/jo4TUjDH36QdC1lxglrkC96mCIBDODfpABfNGS1AQ==
`
	realPublicKey = "seed-key-1:50yMTea49VrO6MAv057Clc4GSNeLSdlpL3ItonTzHpg="
)

var narInfoSeeds = []string{
	realNarInfoApp,
	realNarInfoDep,
	refNarInfo,
	// Hashes in the other forms Nix accepts: base16 (cachix), base64, SRI.
	"StorePath: /nix/store/mf2zhgh71jrgnad3zp062i6lc7pvazhd-seed-dep\nURL: nar/x.nar\nCompression: none\n" +
		"NarHash: sha256:0f343b0931126a20f133d67c2b018a3b0f9bdd2ef0b8f5a7d9bcf6e7eb0f4ac6\nNarSize: 120\n",
	"StorePath: /nix/store/mf2zhgh71jrgnad3zp062i6lc7pvazhd-seed-dep\nURL: nar/x.nar\n" +
		"NarHash: sha256-DzQ7CTESaiDxM9Z8KwGKOw+b3S7wuPWn2bz25+sPSsY=\nFileHash: sha256:DzQ7CTESaiDxM9Z8KwGKOw+b3S7wuPWn2bz25+sPSsY=\nNarSize: 120\n",
	// Content-addressed, no deriver, system, several signatures, unknown keys.
	"StorePath: /nix/store/mf2zhgh71jrgnad3zp062i6lc7pvazhd-seed-dep\nURL: nar/y.nar.zst\nCompression: zstd\n" +
		"NarHash: sha256:00kjynz8n03652qccs76ivsvark3pr3dfr6w1ba3x7bx83kcknvv\nNarSize: 120\nReferences: \n" +
		"Deriver: unknown-deriver\nSystem: x86_64-linux\nSig: b:BBBB\nSig: a:AAAA\nSig: b:BBBB\n" +
		"CA: fixed:r:sha256:1lyz8kz2i4g6wcj7n3zkpcw2pqh66fyr1fb0xr6582a0alqcgnq4\nFuture: x: y\n",
	// Edge cases: no final newline, blank lines, CRLF, no space after a
	// colon, References twice, empty values, huge numbers.
	strings.TrimSuffix(realNarInfoDep, "\n"),
	"\n\n" + strings.ReplaceAll(realNarInfoDep, "\n", "\n\n"),
	strings.ReplaceAll(realNarInfoDep, "\n", "\r\n"),
	strings.Replace(realNarInfoDep, "References: ", "References:", 1),
	realNarInfoApp + "References: \n",
	realNarInfoApp + "References: mf2zhgh71jrgnad3zp062i6lc7pvazhd-seed-dep\n",
	strings.Replace(realNarInfoDep, "NarSize: 120", "NarSize: 18446744073709551615", 1),
	strings.Replace(realNarInfoDep, "NarSize: 120", "NarSize: 18446744073709551616", 1),
	strings.Replace(realNarInfoDep, "NarSize: 120", "NarSize: 0", 1),
	strings.Replace(realNarInfoDep, "Compression: xz", "Compression: ", 1),
	strings.Replace(realNarInfoDep, "URL: nar/", "URL:  nar/", 1),
	"",
	":",
	": \n",
	"StorePath: /nix/store/x\n",
}

// FuzzParseNarInfo: ParseNarInfo never panics, and what it accepts prints
// (String) to a narinfo that parses back to an equal value, with the same
// fingerprint.
func FuzzParseNarInfo(f *testing.F) {
	for _, s := range narInfoSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := ParseNarInfo(data)
		if err != nil {
			if !errors.Is(err, ErrBadNarInfo) {
				t.Fatalf("error %v does not wrap ErrBadNarInfo", err)
			}
			return
		}
		if ni.StorePath == "" || ni.URL == "" || ni.NarHash == "" || ni.NarSize == 0 || ni.Compression == "" {
			t.Fatalf("accepted without a required field: %+v", ni)
		}
		out := ni.String()
		again, err := ParseNarInfo([]byte(out))
		if err != nil {
			t.Fatalf("String() of an accepted narinfo does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(ni, again) {
			t.Fatalf("round trip changed the narinfo:\n%#v\n%#v", ni, again)
		}
		if again.String() != out {
			t.Fatalf("String() is not stable:\n%s\n%s", out, again.String())
		}
		if ni.Fingerprint() != again.Fingerprint() {
			t.Fatalf("fingerprint changed")
		}
	})
}

// The real narinfos' signatures verify: the seeds are what Nix writes.
func TestRealNarInfoSeeds(t *testing.T) {
	pk, err := ParsePublicKey(realPublicKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{realNarInfoApp, realNarInfoDep} {
		ni, err := ParseNarInfo([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		if err := Verify(ni, []PublicKey{pk}); err != nil {
			t.Errorf("%s: %v", ni.StorePath, err)
		}
		if ni.String() != s {
			t.Errorf("String() =\n%s\nwant\n%s", ni.String(), s)
		}
	}
}

// fuzzKey is a fixed key, so that the seed corpus is stable.
var fuzzKey = SecretKey{Name: "fuzz-1", Key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32))}

// FuzzReadClosureIndex: ReadClosureIndex never panics, and what it
// accepts is root's closure, every record signed by the trusted key, and
// writes back (WriteClosureIndex) to an index that reads back the same.
func FuzzReadClosureIndex(f *testing.F) {
	infos := syntheticClosure(f, fuzzKey, 4)
	root := infos[0].StorePath
	var buf bytes.Buffer
	if err := WriteClosureIndex(&buf, root, infos); err != nil {
		f.Fatal(err)
	}
	valid := buf.String()
	f.Add([]byte(valid))
	f.Add([]byte(strings.Replace(valid, "Count: 4\n", "Count: 4\nFuture: yes\n", 1)))
	f.Add([]byte(strings.TrimSuffix(valid, "\n")))
	f.Add([]byte(valid[:len(valid)/2]))
	f.Add([]byte(strings.Replace(valid, "Count: 4", "Count: 3", 1)))
	f.Add([]byte(strings.Replace(valid, ClosureIndexMagic+": 1", ClosureIndexMagic+": 2", 1)))
	f.Add([]byte(strings.Replace(valid, "NarSize: 201", "NarSize: 202", 1)))
	one := syntheticClosure(f, fuzzKey, 1)
	buf.Reset()
	if err := WriteClosureIndex(&buf, one[0].StorePath, one); err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(strings.Replace(buf.String(), one[0].StorePath, root, -1)))
	f.Add([]byte(""))
	f.Add([]byte(ClosureIndexMagic + ": 1\n"))
	f.Add([]byte(ClosureIndexMagic + ": 1\nRoot: " + root + "\nCount: 1\n\n\n"))

	keys := []PublicKey{fuzzKey.PublicKey()}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := ReadClosureIndex(bytes.NewReader(data), root, keys)
		if err != nil {
			if !errors.Is(err, ErrBadClosureIndex) {
				t.Fatalf("error %v does not wrap ErrBadClosureIndex", err)
			}
			return
		}
		if len(got) == 0 || got[0].StorePath != root {
			t.Fatalf("accepted an index whose first record is not the root")
		}
		for _, ni := range got {
			if err := Verify(ni, keys); err != nil {
				t.Fatalf("accepted an unverified record: %v", err)
			}
		}
		if err := checkClosure(root, got); err != nil {
			t.Fatalf("accepted something that is not the closure: %v", err)
		}
		var out bytes.Buffer
		if err := WriteClosureIndex(&out, root, got); err != nil {
			t.Fatalf("WriteClosureIndex of an accepted index: %v", err)
		}
		again, err := ReadClosureIndex(bytes.NewReader(out.Bytes()), root, keys)
		if err != nil {
			t.Fatalf("rewritten index does not read: %v\n%s", err, out.String())
		}
		want := slices.Clone(got)
		slices.SortFunc(want[1:], func(a, b *NarInfo) int { return strings.Compare(a.StorePath, b.StorePath) })
		if !reflect.DeepEqual(want, again) {
			t.Fatalf("round trip changed the index")
		}
	})
}

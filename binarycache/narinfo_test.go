package binarycache

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// The narinfo Nix 2.8 wrote in the reference (its signature elided).
const refNarInfo = `StorePath: /nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-ref-doc-app
URL: nar/0nvh5ankmihgpxc324qkf4nbqwsfkwjij571wqp1z2z5lcfmaqpd.nar.zst
Compression: zstd
FileHash: sha256:0nvh5ankmihgpxc324qkf4nbqwsfkwjij571wqp1z2z5lcfmaqpd
FileSize: 251
NarHash: sha256:0vajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c
NarSize: 792
References: l6y0ksiq9a558a12azxw4kr9w5j2z52r-ref-doc-dep
Deriver: iqr8x8r7frih08ws0q5aycg2f2n08q62-ref-doc-app.drv
`

func TestParseNarInfoReference(t *testing.T) {
	ni, err := ParseNarInfo([]byte(refNarInfo))
	if err != nil {
		t.Fatal(err)
	}
	if ni.StorePath != "/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-ref-doc-app" || ni.NarSize != 792 || ni.FileSize != 251 ||
		ni.Compression != "zstd" || len(ni.References) != 1 || ni.Deriver != "iqr8x8r7frih08ws0q5aycg2f2n08q62-ref-doc-app.drv" {
		t.Errorf("parsed %+v", ni)
	}
	if got := ni.String(); got != refNarInfo {
		t.Errorf("String() =\n%s\nwant\n%s", got, refNarInfo)
	}
	const fp = "1;/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-ref-doc-app;sha256:0vajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c;792;/nix/store/l6y0ksiq9a558a12azxw4kr9w5j2z52r-ref-doc-dep"
	if got := ni.Fingerprint(); got != fp {
		t.Errorf("Fingerprint() = %q", got)
	}
	if err := ni.CheckPath("/nix/store/l6y0ksiq9a558a12azxw4kr9w5j2z52r-ref-doc-app"); !errors.Is(err, ErrBadNarInfo) {
		t.Errorf("CheckPath of another path: %v", err)
	}
}

func TestParseNarInfoTolerance(t *testing.T) {
	minimal := "StorePath: /nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-x\nURL: nar/x.nar\nNarHash: sha256:0vajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c\nNarSize: 8\n"
	ni, err := ParseNarInfo([]byte(minimal + "FutureField: whatever: it is\nSystem: x86_64-linux\nDeriver: unknown-deriver\nSig: a:AAAA\nSig: b:BBBB\nSig: a:AAAA\nReferences: \n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ni.Compression != "bzip2" {
		t.Errorf("Compression = %q, want the default bzip2", ni.Compression)
	}
	if ni.Deriver != "" || ni.System != "x86_64-linux" || len(ni.References) != 0 {
		t.Errorf("parsed %+v", ni)
	}
	if len(ni.Sigs) != 2 || ni.Sigs[0] != "a:AAAA" || ni.Sigs[1] != "b:BBBB" {
		t.Errorf("Sigs = %q", ni.Sigs)
	}
	if !strings.Contains(ni.String(), "References: \n") {
		t.Errorf("String() lacks an empty References line:\n%s", ni)
	}
	// Missing final newline.
	if _, err := ParseNarInfo([]byte(strings.TrimSuffix(minimal, "\n"))); err != nil {
		t.Errorf("no final newline: %v", err)
	}
	// Every form of hash Nix accepts, normalised to nix32.
	const nix32 = "sha256:0vajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c"
	d, _ := parseSHA256(nix32)
	for _, form := range []string{
		"sha256:" + strings.ToLower(hexString(d)),
		"sha256:" + base64.StdEncoding.EncodeToString(d),
		"sha256-" + base64.StdEncoding.EncodeToString(d),
	} {
		text := strings.Replace(minimal, nix32, form, 1)
		ni, err := ParseNarInfo([]byte(text))
		if err != nil || ni.NarHash != nix32 {
			t.Errorf("NarHash %s: %v, %+v", form, err, ni)
		}
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func TestParseNarInfoRejects(t *testing.T) {
	base := map[string]string{
		"StorePath": "/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-x",
		"URL":       "nar/x.nar",
		"NarHash":   "sha256:0vajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c",
		"NarSize":   "8",
	}
	build := func(over map[string]string, extra string) string {
		var b strings.Builder
		for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
			v, ok := over[k]
			if !ok {
				v = base[k]
			}
			if v != "-" {
				b.WriteString(k + ": " + v + "\n")
			}
		}
		return b.String() + extra
	}
	for name, text := range map[string]string{
		"no StorePath":          build(map[string]string{"StorePath": "-"}, ""),
		"no URL":                build(map[string]string{"URL": "-"}, ""),
		"no NarHash":            build(map[string]string{"NarHash": "-"}, ""),
		"no NarSize":            build(map[string]string{"NarSize": "-"}, ""),
		"NarSize 0":             build(map[string]string{"NarSize": "0"}, ""),
		"NarSize not a number":  build(map[string]string{"NarSize": "8x"}, ""),
		"bad StorePath":         build(map[string]string{"StorePath": "/tmp/x"}, ""),
		"short hash part":       build(map[string]string{"StorePath": "/nix/store/abc-x"}, ""),
		"md5 NarHash":           build(map[string]string{"NarHash": "md5:00000000000000000000000000000000"}, ""),
		"unprefixed NarHash":    build(map[string]string{"NarHash": "0vajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c"}, ""),
		"bad nix32":             build(map[string]string{"NarHash": "sha256:evajr5707d03n0af1lcp83nmzsa4v2s0ykpwm25dpkikhlz8524c"}, ""),
		"References no space":   build(nil, "References:\nDeriver: iqr8x8r7frih08ws0q5aycg2f2n08q62-ref-doc-app.drv\n"),
		"bad reference":         build(nil, "References: not/a/path\n"),
		"References twice":      build(nil, "References: l6y0ksiq9a558a12azxw4kr9w5j2z52r-a\nReferences: l6y0ksiq9a558a12azxw4kr9w5j2z52r-b\n"),
		"CA twice":              build(nil, "CA: fixed:sha256:x\nCA: fixed:sha256:y\n"),
		"line without colon":    build(nil, "garbage\n"),
		"bad Deriver":           build(nil, "Deriver: ../x\n"),
		"FileSize not a number": build(nil, "FileSize: -1\n"),
	} {
		if ni, err := ParseNarInfo([]byte(text)); !errors.Is(err, ErrBadNarInfo) {
			t.Errorf("%s: err = %v (%+v)", name, err, ni)
		}
	}
}

func genKey(t testing.TB, name string) SecretKey {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return SecretKey{Name: name, Key: priv}
}

func TestSignVerify(t *testing.T) {
	key := genKey(t, "k-1")
	other := genKey(t, "k-2")
	impostor := genKey(t, "k-1") // same name, other key
	ni, err := ParseNarInfo([]byte(refNarInfo))
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ni, []PublicKey{key.PublicKey()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("unsigned: %v", err)
	}
	if err := Sign(ni, key); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ni, []PublicKey{other.PublicKey(), key.PublicKey()}); err != nil {
		t.Errorf("signed: %v", err)
	}
	if err := Verify(ni, []PublicKey{other.PublicKey()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("unknown key: %v", err)
	}
	if err := Verify(ni, []PublicKey{impostor.PublicKey()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("same name, other key: %v", err)
	}
	if err := Verify(ni, nil); !errors.Is(err, ErrUntrusted) {
		t.Errorf("no keys: %v", err)
	}
	// Signing again replaces the signature; signing by another adds one.
	Sign(ni, key)
	Sign(ni, other)
	if len(ni.Sigs) != 2 {
		t.Errorf("Sigs = %q", ni.Sigs)
	}
	// The signed text survives a round trip through String and Parse.
	again, err := ParseNarInfo([]byte(ni.String()))
	if err != nil || Verify(again, []PublicKey{key.PublicKey()}) != nil {
		t.Errorf("round trip: %v", err)
	}
	// Tampering with a signed field breaks the signature.
	tampered := *again
	tampered.NarSize++
	if err := Verify(&tampered, []PublicKey{key.PublicKey()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("tampered NarSize: %v", err)
	}
	tampered = *again
	tampered.References = nil
	if err := Verify(&tampered, []PublicKey{key.PublicKey()}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("dropped reference: %v", err)
	}
	// A malformed signature under a trusted name is an error; under an
	// unknown name it is ignored.
	bad := *again
	bad.Sigs = []string{"k-1:" + base64.StdEncoding.EncodeToString(make([]byte, 63))}
	if err := Verify(&bad, []PublicKey{key.PublicKey()}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("63-byte signature: %v", err)
	}
	bad.Sigs = []string{"k-1:!!notbase64"}
	if err := Verify(&bad, []PublicKey{key.PublicKey()}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("non-base64 signature: %v", err)
	}
	bad.Sigs = append([]string{"zz:" + base64.StdEncoding.EncodeToString(make([]byte, 3))}, again.Sigs...)
	if err := Verify(&bad, []PublicKey{key.PublicKey()}); err != nil {
		t.Errorf("malformed signature by an unknown key should be ignored: %v", err)
	}
}

func TestKeys(t *testing.T) {
	key := genKey(t, "cache.example.org-1")
	pk, err := ParsePublicKey(key.PublicKey().String())
	if err != nil || !pk.Key.Equal(key.PublicKey().Key) || pk.Name != key.Name {
		t.Fatalf("ParsePublicKey: %v", err)
	}
	sk, err := ParseSecretKey(key.Name + ":" + base64.StdEncoding.EncodeToString(key.Key) + "\n")
	if err != nil || !sk.Key.Equal(key.Key) {
		t.Fatalf("ParseSecretKey: %v", err)
	}
	keys, err := ParsePublicKeys(" " + pk.String() + "\n" + genKey(t, "b").PublicKey().String())
	if err != nil || len(keys) != 2 {
		t.Errorf("ParsePublicKeys: %v", err)
	}
	for _, s := range []string{"", "name", ":AAAA", "n:!!", "n:" + base64.StdEncoding.EncodeToString(make([]byte, 31))} {
		if _, err := ParsePublicKey(s); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", s)
		}
	}
	mismatched := append([]byte(nil), key.Key...)
	mismatched[40] ^= 1
	if _, err := ParseSecretKey("n:" + base64.StdEncoding.EncodeToString(mismatched)); err == nil {
		t.Errorf("secret key with a wrong public half accepted")
	}
}

func TestNetrc(t *testing.T) {
	n, err := ParseNetrc(`
# comment
machine cache.example.org login alice password s3cret
machine other.example.org
  login bob
  password "hunter2"
  account ignored
macdef init
  this is a macro machine evil login x password y

default login anon password anonpw
`)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string][2]string{
		"cache.example.org": {"alice", "s3cret"},
		"CACHE.example.org": {"alice", "s3cret"},
		"other.example.org": {"bob", `"hunter2"`},
		"evil":              {"anon", "anonpw"},
		"unknown":           {"anon", "anonpw"},
	} {
		l, p, ok := n.Credentials(host)
		if !ok || l != want[0] || p != want[1] {
			t.Errorf("Credentials(%s) = %q %q %v", host, l, p, ok)
		}
	}
	n, _ = ParseNetrc("machine a login x password y\n")
	if _, _, ok := n.Credentials("b"); ok {
		t.Errorf("no default, yet credentials for b")
	}
	for _, bad := range []string{"login x", "machine", "machine a login", "frobnicate"} {
		if _, err := ParseNetrc(bad); err == nil {
			t.Errorf("ParseNetrc(%q) accepted", bad)
		}
	}
	var nilNetrc *Netrc
	if _, _, ok := nilNetrc.Credentials("a"); ok {
		t.Errorf("nil Netrc has credentials")
	}
}

func TestIsTransient(t *testing.T) {
	for code, want := range map[int]bool{500: true, 502: true, 503: true, 504: true, 501: false, 505: false, 511: false, 408: true, 429: true, 400: false, 403: false, 404: false} {
		if got := IsTransient(&Error{Op: "x", Err: &HTTPError{StatusCode: code}}); got != want {
			t.Errorf("HTTP %d: transient = %v", code, got)
		}
	}
	if IsTransient(ErrNotFound) || IsTransient(ErrHashMismatch) || !IsTransient(ErrStalled) || IsTransient(nil) {
		t.Errorf("sentinels misclassified")
	}
}

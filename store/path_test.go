package store

import (
	"crypto/sha1"
	"strings"
	"testing"
)

func TestValidatePath(t *testing.T) {
	const h = "/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-"
	good := []string{
		pathA, pathB, drvB,
		h + "a",
		h + strings.Repeat("n", 211),
		h + "A-Z_a+b.c?d=e",
		h + ".hidden", // Nix 2.8 and newer accept a leading '.'
		h + "..x",
	}
	bad := []string{
		"",
		"nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0-a",
		"/nix/store/",
		"/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0",
		h,
		h + strings.Repeat("n", 212),
		"/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq0_a",
		"/nix/store/e647zn09hzv7n18i15qr20d42vhc7iq0-a", // e, o, t, u are not nix32
		"/nix/store/M647zn09hzv7n18i15qr20d42vhc7iq0-a",
		"/nix/store/m647zn09hzv7n18i15qr20d42vhc7iq-a",
		h + "a/b",
		h + "a b",
		h + "ä",
		h + "a\x00",
		h + ".",
		h + "..",
		h + ".-x",
		h + "..-x",
		"/nix/store/../m647zn09hzv7n18i15qr20d42vhc7iq0-a",
		"/other/store/m647zn09hzv7n18i15qr20d42vhc7iq0-a",
	}
	for _, p := range good {
		if err := ValidatePath(p); err != nil {
			t.Errorf("ValidatePath(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range bad {
		if err := ValidatePath(p); err == nil {
			t.Errorf("ValidatePath(%q) = nil, want an error", p)
		}
	}
}

func TestValidateDerivedPath(t *testing.T) {
	for _, s := range []string{pathA, drvB + "!out", drvB + "!out,dev", drvB + "!*"} {
		if err := validateDerivedPath(s); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
	for _, s := range []string{pathA + "!out", drvB + "!", drvB + "!out,", drvB + "!o/ut", drvB + "^out", "x!out"} {
		if err := validateDerivedPath(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
}

func TestNix32(t *testing.T) {
	// The name of an indirect root's gcroots/auto link, checked with
	// `sha1sum | nix-hash --type sha1 --to-base32` on Nix 2.8.
	sum := sha1.Sum([]byte("/srv/sandbox/.gc/app"))
	if got, want := nix32(sum[:]), "d7yf13pq3vzl957pyjp9dxa1nkrmvjcf"; got != want {
		t.Errorf("nix32(sha1) = %s, want %s", got, want)
	}
	// sha256("hello"), checked with nix-hash --type sha256 --to-base32.
	got, err := hexToNix32("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
	if want := "sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic"; err != nil || got != want {
		t.Errorf("hexToNix32 = %s, %v; want %s", got, err, want)
	}
	if _, err := hexToNix32("sha256:abc"); err == nil {
		t.Error("hexToNix32 accepted a non-hex hash")
	}
}

func TestValidateLink(t *testing.T) {
	if got, err := validateLink("/a/./b//c/../d"); err != nil || got != "/a/b/d" {
		t.Errorf("validateLink = %q, %v", got, err)
	}
	for _, l := range []string{"", "a/b", "./x", "/a\x00b"} {
		if _, err := validateLink(l); err == nil {
			t.Errorf("validateLink(%q): no error", l)
		}
	}
}

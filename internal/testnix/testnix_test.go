package testnix

import (
	"os/exec"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	v := Version(t)
	out, err := exec.Command("nix", "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if f := strings.Fields(string(out)); len(f) == 0 || f[len(f)-1] != v {
		t.Errorf("Version = %q, nix --version says %q", v, out)
	}
	if !AtLeast(t, 2, 0) || AtLeast(t, 99, 0) {
		t.Errorf("AtLeast disagrees with version %s", v)
	}
}

func TestDaemonProtocol(t *testing.T) {
	p := DaemonProtocol(t)
	// Every Nix since 2.0 speaks 1.x from 1.21 on; 2.8 is the oldest here.
	if p>>8 != 1 || p&0xff < 0x15 {
		t.Fatalf("DaemonProtocol = %#x", p)
	}
	// Protocol versions as nix-reference's table has them.
	switch {
	case strings.HasPrefix(Version(t), "2.8."):
		if p != 0x122 {
			t.Errorf("Nix %s advertises %#x, want 0x122 (1.34)", Version(t), p)
		}
	case AtLeast(t, 2, 26):
		if p < 0x126 {
			t.Errorf("Nix %s advertises %#x, want 1.38 or newer", Version(t), p)
		}
	}
}

func TestTexts(t *testing.T) {
	for _, s := range []string{
		"cannot add path '/nix/store/x' because it lacks a valid signature",
		"cannot add path '/nix/store/x' because it lacks a signature by a trusted key",
	} {
		if !SignatureRefused.MatchString(s) {
			t.Errorf("SignatureRefused does not match %q", s)
		}
	}
	for _, s := range []string{
		"unable to download 'http://127.0.0.1:1/nix-cache-info': Couldn't connect to server (7)",
		"unable to download 'http://127.0.0.1:1/nix-cache-info': Could not connect to server (7)",
	} {
		if !CannotConnect.MatchString(s) {
			t.Errorf("CannotConnect does not match %q", s)
		}
	}
}

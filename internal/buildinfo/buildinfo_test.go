package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}}
	dirty := append(rev, debug.BuildSetting{Key: "vcs.modified", Value: "true"})
	for _, c := range []struct {
		name    string
		version string
		vcs     []debug.BuildSetting
		want    string
	}{
		{"module version", "v0.1.0", rev, "v0.1.0"},
		{"revision", "(devel)", rev, "0123456789ab"},
		{"dirty revision", "", dirty, "0123456789ab-dirty"},
		{"nothing", "(devel)", nil, "devel"},
	} {
		info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/nix-aurora/nix-aurora", Version: c.version}, Settings: c.vcs}
		if got := FromBuildInfo(info); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if got := Version("1.2.3"); got != "1.2.3" {
		t.Errorf("stamped: %q", got)
	}
	if got := Version(""); got == "" {
		t.Error("unstamped: empty")
	}
}

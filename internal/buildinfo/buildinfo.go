// Package buildinfo says which version of nix-aurora a binary is, for the
// programs' version commands. It never reads anything but the binary's own
// build information.
package buildinfo

import "runtime/debug"

// Version is the version of the running binary: stamped, when the build
// set one with -ldflags "-X main.version=..." (scripts/build-nix-init,
// default.nix), else what the Go toolchain recorded (see FromBuildInfo).
func Version(stamped string) string {
	if stamped != "" {
		return stamped
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	return FromBuildInfo(info)
}

// FromBuildInfo is the module's version when it has one (go install
// MODULE@VERSION, or a build in a checkout that Go stamps with a
// pseudo-version), else the VCS revision it was built from (12 digits,
// "-dirty" with uncommitted changes), else "devel".
func FromBuildInfo(info *debug.BuildInfo) string {
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

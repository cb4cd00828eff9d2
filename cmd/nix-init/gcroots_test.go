package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPlantedGCSymlink: a .gc that is a symlink (planted by the job's own
// processes, or anyone who can write the sandbox) to a directory outside
// the sandbox is refused: the run fails naming it, no link appears where it
// points, and the node registers no root; status does not list what is
// there as the sandbox's roots.
func TestPlantedGCSymlink(t *testing.T) {
	t.Parallel()
	r := daemonRig(t, "planted-gc")
	outside := filepath.Join(filepath.Dir(r.sb.Dir), "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(outside, int(r.sb.UID), int(r.sb.GID)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(r.sb.Dir, ".gc")); err != nil {
		t.Fatal(err)
	}

	res := runInit(t, r.cmd("--timeout", "20s", "app="+r.fx.Root), 30*time.Second)
	if res.code != exitPermanent {
		t.Errorf("exit code %d, want %d", res.code, exitPermanent)
	}
	if !strings.Contains(res.stderr, ".gc is a symlink") {
		t.Errorf("stderr does not say .gc is a symlink:\n%s", res.stderr)
	}
	if entries, err := os.ReadDir(outside); err != nil || len(entries) != 0 {
		t.Errorf("the directory .gc points to has %v (%v), want nothing", entries, err)
	}
	auto := filepath.Join(r.node.Root, "nix/var/nix/gcroots/auto")
	entries, err := os.ReadDir(auto)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		target, _ := os.Readlink(filepath.Join(auto, e.Name()))
		t.Errorf("the node registered a root: %s -> %s", e.Name(), target)
	}

	os.Symlink(r.fx.Root, filepath.Join(outside, "elsewhere"))
	res = runInit(t, r.cmd("status"), 20*time.Second)
	if strings.Contains(res.stdout, "elsewhere") || !strings.Contains(res.stdout, ".gc is a symlink") {
		t.Errorf("status lists roots through the symlink:\n%s", res.stdout)
	}
}

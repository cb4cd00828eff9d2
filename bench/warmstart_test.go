package bench

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/nix-aurora/nix-aurora/internal/testnix"
	"github.com/nix-aurora/nix-aurora/internal/testnode"
)

// BenchmarkWarmStart: the sandbox's init when every path is already valid,
// the common case on a node that ran the job before. nix-init against the
// old bash init, `nix-store --add-root .gc/NAME --indirect -r PATH`, run the
// same way and interleaved so both see the same machine state.
//
//	daemon:      as an unprivileged sandbox user, through the node's daemon
//	single-user: as the store's owner; nix-init starts `nix-daemon --stdio`
//
// Metrics per mode: the median wall time of each (ms), the speedup
// (nix-store / nix-init) and nix-init's own peak RSS (KiB, VmHWM from its
// --report: the rusage of a child forked from the benchmark would count the
// benchmark's pages too).
func BenchmarkWarmStart(b *testing.B) {
	testnix.Require(b)
	testnix.RequireRoot(b)
	bin := nixInitBinary(b)
	fx := testnode.Chain(b, "warm", 4, 3, 4096)

	// nix-init waits, once rooted, for a GC in progress that may have
	// missed the roots (a Nix 2.8 race); --gc-wait=0 skips that, for nodes
	// where GC never runs while sandboxes start.
	for _, mode := range []struct{ name, flag string }{{"daemon", "--gc-wait=10s"}, {"daemon-no-gc-wait", "--gc-wait=0"}} {
		b.Run(mode.name, func(b *testing.B) {
			// The socket where Nix puts it, as on a real node.
			node := testnode.NewNode(b, testnode.NodeOptions{SocketInStateDir: true})
			node.Copy(b, fx.Root)
			node.StartDaemon(b)
			sb := testnode.NewSandbox(b, node)
			initBin := sb.CopyExecutable(b, bin)
			env := append(sb.Env(), "NIX_REMOTE="+node.DaemonURI())
			compare(b, filepath.Join(sb.Dir, "report.json"), func(i int) (*exec.Cmd, *exec.Cmd) {
				old := sb.Command("nix-store", "--add-root", ".gc/app", "--indirect", "-r", fx.Root)
				old.Env = env
				ours := sb.Command(initBin, mode.flag, "--report", "report.json", "app="+fx.Root)
				ours.Env = env
				return old, ours
			})
		})
	}

	b.Run("single-user", func(b *testing.B) {
		node := testnode.NewNode(b, testnode.NodeOptions{})
		node.Copy(b, fx.Root)
		dir := b.TempDir()
		nixDaemon, err := exec.LookPath("nix-daemon")
		if err != nil {
			b.Fatal(err)
		}
		compare(b, filepath.Join(dir, "report.json"), func(i int) (*exec.Cmd, *exec.Cmd) {
			old := node.Command("nix-store", "--add-root", filepath.Join(dir, "old", "app"), "--indirect", "-r", fx.Root)
			ours := node.Command(bin, "--store", node.StoreURI(), "--nix-daemon", nixDaemon,
				"--gc-root-dir", filepath.Join(dir, "new"), "--report", filepath.Join(dir, "report.json"), "app="+fx.Root)
			return old, ours
		})
	})
}

// compare runs both commands b.N times, alternating which goes first, and
// reports medians, the speedup and nix-init's peak RSS.
func compare(b *testing.B, report string, cmds func(i int) (old, ours *exec.Cmd)) {
	b.Helper()
	// One untimed round each: the first run of a binary pays for the page cache.
	old, ours := cmds(-1)
	timed(b, old)
	timed(b, ours)

	var oldT, oursT []time.Duration
	var peak int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		old, ours := cmds(i)
		first, second := old, ours
		if i%2 == 1 {
			first, second = ours, old
		}
		s1, s2 := timed(b, first), timed(b, second)
		so, sn := s1, s2
		if i%2 == 1 {
			so, sn = s2, s1
		}
		oldT = append(oldT, so.wall)
		oursT = append(oursT, sn.wall)
		peak = max(peak, reportedRSS(b, report, sn.maxRSS))
	}
	b.StopTimer()
	mo, mn := median(oldT), median(oursT)
	b.ReportMetric(ms(mo), "nix-store-ms")
	b.ReportMetric(ms(mn), "nix-init-ms")
	b.ReportMetric(float64(mo)/float64(mn), "speedup")
	b.ReportMetric(float64(peak), "nix-init-maxrss-KiB")
	b.ReportMetric(0, "ns/op")
	b.Logf("%d runs each: nix-store median %.1f ms, nix-init median %.1f ms (%.1fx), nix-init peak RSS %d KiB",
		len(oldT), ms(mo), ms(mn), float64(mo)/float64(mn), peak)
}

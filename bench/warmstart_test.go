package bench

import (
	"fmt"
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
			floorBin := sb.CopyExecutable(b, connFloorBinary(b))
			env := append(sb.Env(), "NIX_REMOTE="+node.DaemonURI())
			compare(b, filepath.Join(sb.Dir, "report.json"), func(i int) (*exec.Cmd, *exec.Cmd, *exec.Cmd) {
				old := sb.Command("nix-store", "--add-root", ".gc/app", "--indirect", "-r", fx.Root)
				old.Env = env
				ours := sb.Command(initBin, mode.flag, "--report", "report.json", "app="+fx.Root)
				ours.Env = env
				floor := sb.Command(floorBin)
				floor.Env = env
				return old, ours, floor
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
		compare(b, filepath.Join(dir, "report.json"), func(i int) (*exec.Cmd, *exec.Cmd, *exec.Cmd) {
			old := node.Command("nix-store", "--add-root", filepath.Join(dir, "old", "app"), "--indirect", "-r", fx.Root)
			ours := node.Command(bin, "--store", node.StoreURI(), "--nix-daemon", nixDaemon,
				"--gc-root-dir", filepath.Join(dir, "new"), "--report", filepath.Join(dir, "report.json"), "app="+fx.Root)
			return old, ours, nil
		})
	})
}

// compare runs the commands b.N times, rotating which goes first, and
// reports medians, the speedup and nix-init's peak RSS. floor, when not
// nil, is the least any client could take on the same path (connfloor):
// nix-store's median over its median is the best speedup the floor allows.
func compare(b *testing.B, report string, cmds func(i int) (old, ours, floor *exec.Cmd)) {
	b.Helper()
	// One untimed round each: the first run of a binary pays for the page cache.
	old, ours, floor := cmds(-1)
	for _, c := range []*exec.Cmd{old, ours, floor} {
		if c != nil {
			timed(b, c)
		}
	}

	var oldT, oursT, floorT []time.Duration
	var peak int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		old, ours, floor := cmds(i)
		order := []*exec.Cmd{old, ours, floor}
		if floor == nil {
			order = order[:2]
		}
		for j := range order {
			c := order[(i+j)%len(order)]
			s := timed(b, c)
			switch c {
			case old:
				oldT = append(oldT, s.wall)
			case ours:
				oursT = append(oursT, s.wall)
				peak = max(peak, reportedRSS(b, report, s.maxRSS))
			default:
				floorT = append(floorT, s.wall)
			}
		}
	}
	b.StopTimer()
	mo, mn := median(oldT), median(oursT)
	b.ReportMetric(ms(mo), "nix-store-ms")
	b.ReportMetric(ms(mn), "nix-init-ms")
	b.ReportMetric(float64(mo)/float64(mn), "speedup")
	b.ReportMetric(float64(peak), "nix-init-maxrss-KiB")
	b.ReportMetric(0, "ns/op")
	line := fmt.Sprintf("%d runs each: nix-store median %.1f ms, nix-init median %.1f ms (%.1fx), nix-init peak RSS %d KiB",
		len(oldT), ms(mo), ms(mn), float64(mo)/float64(mn), peak)
	if len(floorT) > 0 {
		mf := median(floorT)
		b.ReportMetric(ms(mf), "floor-ms")
		b.ReportMetric(float64(mo)/float64(mf), "speedup-at-floor")
		line += fmt.Sprintf("; floor (connfloor) %.1f ms: at most %.1fx", ms(mf), float64(mo)/float64(mf))
	}
	b.Log(line)
}

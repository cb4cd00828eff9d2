package store

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"
)

func TestIsValidPathBytes(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("IsValidPath", wb(nil).u64(1).str(pathA))
		p.send(wb(nil).last().u64(1))
		p.expect("IsValidPath", wb(nil).u64(1).str(pathB))
		p.send(wb(nil).last().u64(0))
	})
	if ok, err := c.IsValidPath(ctxT(t), pathA); err != nil || !ok {
		t.Errorf("IsValidPath(A) = %v, %v", ok, err)
	}
	if ok, err := c.IsValidPath(ctxT(t), pathB); err != nil || ok {
		t.Errorf("IsValidPath(B) = %v, %v", ok, err)
	}
}

func TestQueryValidPathsBytes(t *testing.T) {
	t.Run("1.27+ sends the substitute flag", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryValidPaths", wb(nil).u64(31).strs(pathA, pathB).u64(1))
			p.send(wb(nil).last().strs(pathB))
		})
		got, err := c.QueryValidPaths(ctxT(t), []string{pathA, pathB}, true)
		if err != nil || !reflect.DeepEqual(got, []string{pathB}) {
			t.Errorf("QueryValidPaths = %q, %v", got, err)
		}
	})
	t.Run("1.26 does not", func(t *testing.T) {
		c := fake(t, 0x11a, func(p *peer) {
			p.expect("QueryValidPaths", wb(nil).u64(31).strs(pathA))
			p.send(wb(nil).last().strs())
		})
		got, err := c.QueryValidPaths(ctxT(t), []string{pathA}, true)
		if err != nil || len(got) != 0 {
			t.Errorf("QueryValidPaths = %q, %v", got, err)
		}
	})
	t.Run("hostile count", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryValidPaths", wb(nil).u64(31).strs(pathA).u64(0))
			p.send(wb(nil).last().u64(maxListLen + 1))
		})
		_, err := c.QueryValidPaths(ctxT(t), []string{pathA}, false)
		if !errors.Is(err, ErrProtocol) || !errors.Is(err, ErrBroken) {
			t.Errorf("err = %v, want ErrProtocol", err)
		}
	})
}

// pathInfoReply is QueryPathInfo's reply for a valid pathB.
func pathInfoReply(narHash string, narSize uint64) wb {
	return wb(nil).last().bool(true).
		str(drvB).str(narHash).strs(pathA).u64(1700000000).u64(narSize).
		bool(false).strs("cache-1:c2ln").str("")
}

func TestQueryPathInfoBytes(t *testing.T) {
	const hash = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
	c := fake(t, 0x122, func(p *peer) {
		p.expect("QueryPathInfo", wb(nil).u64(26).str(pathB))
		p.send(pathInfoReply(hash, 792))
		p.expect("QueryPathInfo", wb(nil).u64(26).str(pathA))
		p.send(wb(nil).last().bool(false))
		p.expect("IsValidPath", wb(nil).u64(1).str(pathA))
		p.send(wb(nil).last().bool(false))
	})
	info, err := c.QueryPathInfo(ctxT(t), pathB)
	if err != nil {
		t.Fatal(err)
	}
	want := &PathInfo{Path: pathB, Deriver: drvB, NarHash: hash, References: []string{pathA},
		RegistrationTime: 1700000000, NarSize: 792, Sigs: []string{"cache-1:c2ln"}}
	if !reflect.DeepEqual(info, want) {
		t.Errorf("info = %#v\nwant %#v", info, want)
	}
	if h, err := info.NarHashNix32(); err != nil || h != "sha256:094qif9n4cq4fdg459qzbhg1c6wywawwaaivx0k0x8xhbyx4vwic" {
		t.Errorf("NarHashNix32 = %q, %v", h, err)
	}
	_, err = c.QueryPathInfo(ctxT(t), pathA)
	if !errors.Is(err, ErrNotValid) || IsConnectionError(err) {
		t.Errorf("invalid path: err = %v, want ErrNotValid", err)
	}
	// Still usable.
	if _, err := c.IsValidPath(ctxT(t), pathA); err != nil {
		t.Errorf("after ErrNotValid: %v", err)
	}
}

func TestQueryMissingBytes(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("QueryMissing", wb(nil).u64(40).strs(pathA, drvB+"!out,dev"))
		p.send(wb(nil).last().strs(drvB).strs(pathA).strs().u64(251).u64(792))
	})
	m, err := c.QueryMissing(ctxT(t), []string{pathA, drvB + "!out,dev"})
	want := Missing{WillBuild: []string{drvB}, WillSubstitute: []string{pathA}, Unknown: []string{}, DownloadSize: 251, NarSize: 792}
	if err != nil || !reflect.DeepEqual(m, want) {
		t.Errorf("QueryMissing = %#v, %v", m, err)
	}
}

func TestQuerySubstitutablePathInfosBytes(t *testing.T) {
	reply := wb(nil).last().u64(1).str(pathB).str(drvB).strs(pathA).u64(251).u64(792)
	want := map[string]SubstitutablePathInfo{pathB: {Deriver: drvB, References: []string{pathA}, DownloadSize: 251, NarSize: 792}}
	t.Run("1.22+ sends path→CA", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QuerySubstitutablePathInfos", wb(nil).u64(30).u64(2).str(pathA).str("").str(pathB).str(""))
			p.send(reply)
		})
		got, err := c.QuerySubstitutablePathInfos(ctxT(t), []string{pathA, pathB})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, %v", got, err)
		}
	})
	t.Run("1.21 sends paths", func(t *testing.T) {
		c := fake(t, 0x115, func(p *peer) {
			p.expect("QuerySubstitutablePathInfos", wb(nil).u64(30).strs(pathA, pathB))
			p.send(reply)
		})
		got, err := c.QuerySubstitutablePathInfos(ctxT(t), []string{pathA, pathB})
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("got %#v, %v", got, err)
		}
	})
}

func TestSimpleOpsBytes(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("EnsurePath", wb(nil).u64(10).str(pathA))
		p.send(wb(nil).last().u64(1))
		p.expect("AddTempRoot", wb(nil).u64(11).str(pathA))
		p.send(wb(nil).last().u64(1))
		p.expect("AddIndirectRoot", wb(nil).u64(12).str("/srv/sandbox/.gc/app"))
		p.send(wb(nil).last().u64(1))
		p.expect("BuildPaths", wb(nil).u64(9).strs(pathA, drvB+"!*").u64(2))
		p.send(wb(nil).last().u64(1))
		p.expect("FindRoots", wb(nil).u64(14))
		p.send(wb(nil).last().u64(2).str("/srv/sandbox/.gc/app").str(pathA).str("{censored}").str(pathA))
	})
	ctx := ctxT(t)
	if err := c.EnsurePath(ctx, pathA); err != nil {
		t.Error(err)
	}
	if err := c.AddTempRoot(ctx, pathA); err != nil {
		t.Error(err)
	}
	if err := c.AddIndirectRoot(ctx, "/srv/sandbox/./.gc//app"); err != nil { // sent clean
		t.Error(err)
	}
	if err := c.BuildPaths(ctx, []string{pathA, drvB + "!*"}, BuildCheck); err != nil {
		t.Error(err)
	}
	roots, err := c.FindRoots(ctx)
	if want := map[string]string{"/srv/sandbox/.gc/app": pathA, "{censored}": pathA}; err != nil || !reflect.DeepEqual(roots, want) {
		t.Errorf("FindRoots = %v, %v", roots, err)
	}
}

func TestSetOptionsBytes(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("SetOptions", wb(nil).u64(19).
			u64(0).u64(1).u64(1).        // keepFailed, keepGoing, tryFallback
			u64(3).u64(4).u64(60).       // verbosity, maxBuildJobs, maxSilentTime
			u64(1).u64(7).u64(0).u64(0). // useBuildHook, verboseBuild (false = 7), logType, printBuildTrace
			u64(2).u64(1).               // buildCores, useSubstitutes
			u64(2).str("connect-timeout").str("5").str("substituters").str("http://127.0.0.1:1 file:///x"))
		p.send(wb(nil).u64(stderrNext).str("warning: ignoring untrusted substituter\n").last())
	})
	o := DefaultOptions()
	o.KeepGoing, o.TryFallback = true, true
	o.Verbosity, o.MaxBuildJobs, o.MaxSilentTime, o.BuildCores = LvlInfo, 4, 60, 2
	o.Overrides = map[string]string{"substituters": "http://127.0.0.1:1 file:///x", "connect-timeout": "5"}
	if _, ok := c.Options(); ok {
		t.Error("Options before SetOptions")
	}
	if err := c.SetOptions(ctxT(t), o); err != nil {
		t.Fatal(err)
	}
	got, ok := c.Options()
	if !ok || !reflect.DeepEqual(got, o) {
		t.Errorf("Options() = %+v, %v; want %+v", got, ok, o)
	}
	got.Overrides["x"] = "y" // a copy
	o.Overrides["y"] = "z"   // so is what was kept
	if again, _ := c.Options(); len(again.Overrides) != 2 {
		t.Errorf("Options() shares its map: %v", again.Overrides)
	}
}

func TestBadPathsSendNothing(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) { p.expectSilence(200 * time.Millisecond) })
	ctx := ctxT(t)
	bad := "/nix/store/e647zn09hzv7n18i15qr20d42vhc7iq0-x" // 'e' is not nix32
	info := PathInfo{Path: pathA, NarHash: "x", NarSize: 1}
	calls := map[string]error{}
	calls["IsValidPath"] = func() error { _, err := c.IsValidPath(ctx, bad); return err }()
	calls["QueryValidPaths"] = func() error { _, err := c.QueryValidPaths(ctx, []string{pathA, bad}, false); return err }()
	calls["QueryPathInfo"] = func() error { _, err := c.QueryPathInfo(ctx, "relative"); return err }()
	calls["QueryMissing"] = func() error { _, err := c.QueryMissing(ctx, []string{pathA + "!out"}); return err }()
	calls["QuerySubstitutablePathInfos"] = func() error { _, err := c.QuerySubstitutablePathInfos(ctx, []string{bad}); return err }()
	calls["EnsurePath"] = c.EnsurePath(ctx, pathA+"/bin")
	calls["AddTempRoot"] = c.AddTempRoot(ctx, "/nix/store/"+pathA[11:43]+"-")
	calls["AddIndirectRoot"] = c.AddIndirectRoot(ctx, "relative/link")
	calls["BuildPaths"] = c.BuildPaths(ctx, []string{drvB + "!"}, BuildNormal)
	calls["NarFromPath"] = func() error { _, err := c.NarFromPath(ctx, bad, nil); return err }()
	bi := info
	bi.References = []string{bad}
	calls["AddToStoreNar reference"] = c.AddToStoreNar(ctx, bi, nil, false, false)
	bi = info
	bi.Deriver = "x.drv"
	calls["AddToStoreNar deriver"] = c.AddToStoreNar(ctx, bi, nil, false, false)
	for op, err := range calls {
		if err == nil {
			t.Errorf("%s: no error", op)
		}
	}
}

func TestCancelUnblocksHungCall(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", isValidReq())
		// Never answer; the client hangs up.
		p.conn.SetReadDeadline(time.Now().Add(peerTimeout))
		var b [1]byte
		if _, err := p.conn.Read(b[:]); err == nil {
			t.Errorf("peer: expected the client to close the connection")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.IsValidPath(ctx, pathA)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}
	if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
		t.Errorf("after cancel: err = %v, want ErrBroken", err)
	}
}

func TestCancelWhileWaitingForLock(t *testing.T) {
	release := make(chan struct{})
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", isValidReq())
		<-release
		p.send(wb(nil).last().bool(true))
	})
	first := make(chan error, 1)
	go func() { // holds the connection
		_, err := c.IsValidPath(context.Background(), pathA)
		first <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.IsValidPath(ctx, pathA)
	close(release)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want DeadlineExceeded", err)
	}
	if err := <-first; err != nil {
		t.Errorf("the call holding the connection: %v", err)
	}
}

func TestCallsAreSerialised(t *testing.T) {
	const n = 8
	c := fake(t, 0x122, func(p *peer) {
		for i := 0; i < n; i++ {
			p.expect("request", isValidReq())
			p.send(wb(nil).u64(stderrNext).str("working\n").last().bool(true))
		}
	})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, err := c.IsValidPath(ctxT(t), pathA); err != nil || !ok {
				t.Errorf("IsValidPath = %v, %v", ok, err)
			}
		}()
	}
	wg.Wait()
}

func TestCloseFailsLaterCalls(t *testing.T) {
	c := fake(t, 0x122, nil)
	c.Close()
	if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want ErrBroken", err)
	}
}

func TestCollectGarbageBytes(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("CollectGarbage", wb(nil).u64(20).u64(0).strs().u64(0).u64(0).u64(0).u64(0).u64(0))
		p.send(wb(nil).u64(stderrNext).str("waiting for the big garbage collector lock...\n").last().strs().u64(0).u64(0))
		p.expect("CollectGarbage", wb(nil).u64(20).u64(3).strs(pathA).u64(0).u64(1<<40).u64(0).u64(0).u64(0))
		p.send(wb(nil).last().strs(pathA).u64(4096).u64(0))
	})
	ctx := ctxT(t)
	var logged []string
	c.SetLogger(func(ev Event) { logged = append(logged, ev.Text) })
	res, err := c.CollectGarbage(ctx, GCOptions{Action: GCReturnLive})
	if err != nil || len(res.Paths) != 0 || res.BytesFreed != 0 || len(logged) != 1 {
		t.Errorf("CollectGarbage(return live) = %+v, %v; logged %q", res, err, logged)
	}
	res, err = c.CollectGarbage(ctx, GCOptions{Action: GCDeleteSpecific, PathsToDelete: []string{pathA}, MaxFreed: 1 << 40})
	if err != nil || !reflect.DeepEqual(res, GCResult{Paths: []string{pathA}, BytesFreed: 4096}) {
		t.Errorf("CollectGarbage(delete specific) = %+v, %v", res, err)
	}
	if _, err := c.CollectGarbage(ctx, GCOptions{Action: 4}); err == nil {
		t.Error("an unknown action was sent")
	}
	if _, err := c.CollectGarbage(ctx, GCOptions{Action: GCDeleteSpecific, PathsToDelete: []string{"/tmp/x"}}); err == nil {
		t.Error("a bad path was sent")
	}
}

// TestAddTempRootsPipelined: the requests go out together, before any
// reply is read; the replies are then read in order.
func TestAddTempRootsPipelined(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("AddTempRoot twice", wb(nil).u64(11).str(pathA).u64(11).str(pathB))
		p.send(wb(nil).last().u64(1).last().u64(1))
		p.expect("IsValidPath", wb(nil).u64(1).str(pathA))
		p.send(wb(nil).last().u64(1))
	})
	ctx := ctxT(t)
	if err := c.AddTempRoots(ctx, []string{pathA, pathB}); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.IsValidPath(ctx, pathA); err != nil || !ok {
		t.Errorf("the connection is out of step after the pipeline: %v, %v", ok, err)
	}
}

// TestAddTempRootsErrorMidPipeline: an error with replies still pending
// leaves the connection unusable rather than out of step.
func TestAddTempRootsErrorMidPipeline(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("AddTempRoot twice", wb(nil).u64(11).str(pathA).u64(11).str(pathB))
		p.send(errorV126("cannot add temp root").last().u64(1))
	})
	err := c.AddTempRoots(ctxT(t), []string{pathA, pathB})
	var de *DaemonError
	if !errors.As(err, &de) || de.Message != "cannot add temp root" {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
		t.Errorf("the connection is still used after a failed pipeline: %v", err)
	}
}

// TestAddSignaturesBytes: op 37, the path, its signatures; pipelined in
// path order like AddTempRoots.
func TestAddSignaturesBytes(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("AddSignatures twice", wb(nil).u64(37).str(pathA).strs("k-1:c2ln").u64(37).str(pathB).strs("k-1:YQ==", "k-2:Yg=="))
		p.send(wb(nil).last().u64(1).last().u64(1))
	})
	err := c.AddSignatures(ctxT(t), map[string][]string{pathB: {"k-1:YQ==", "k-2:Yg=="}, pathA: {"k-1:c2ln"}})
	if err != nil {
		t.Fatal(err)
	}
}

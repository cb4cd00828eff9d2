package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// testNar is a well-formed NAR of one regular file holding contents.
func testNar(contents string) []byte {
	return wb(nil).str("nix-archive-1").str("(").str("type").str("regular").
		str("contents").str(contents).str(")")
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// addReq is AddToStoreNar's request up to the NAR.
func addReq(info PathInfo, repair, dontCheckSigs bool) wb {
	return wb(nil).u64(39).str(info.Path).str(info.Deriver).str(info.NarHash).strs(info.References...).
		u64(info.RegistrationTime).u64(info.NarSize).bool(info.Ultimate).strs(info.Sigs...).str(info.CA).
		bool(repair).bool(dontCheckSigs)
}

func TestAddToStoreNarFramed(t *testing.T) {
	nar := testNar(strings.Repeat("x", 100<<10+3)) // two frames: 64 KiB and the rest
	info := PathInfo{Path: pathB, Deriver: drvB, NarHash: sha256hex(nar), References: []string{pathA},
		NarSize: uint64(len(nar)), Sigs: []string{"k:s"}}
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", addReq(info, false, true))
		// The daemon logs before reading frames; the client must read this
		// while it uploads.
		p.send(wb(nil).u64(stderrStartActivity).u64(1).u64(0).u64(0).str("importing").u64(0).u64(0))
		p.expect("frame 1", wb(nil).u64(frameSize).raw(nar[:frameSize]))
		rest := nar[frameSize:]
		// Frames are not padded: len(rest) is not a multiple of 8.
		p.expect("frame 2", wb(nil).u64(uint64(len(rest))).raw(rest))
		p.expect("terminator", wb(nil).u64(0))
		p.send(wb(nil).u64(stderrStopActivity).u64(1).last())
	})
	if err := c.AddToStoreNar(ctxT(t), info, bytes.NewReader(nar), false, true); err != nil {
		t.Fatal(err)
	}
}

func TestAddToStoreNarErrorAfterUpload(t *testing.T) {
	// What Nix 2.8 does: it drains the frames, then reports the error; the
	// connection stays usable.
	nar := testNar("hello")
	info := PathInfo{Path: pathA, NarHash: sha256hex(nar), NarSize: uint64(len(nar))}
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", addReq(info, false, false))
		p.expect("frame", wb(nil).u64(uint64(len(nar))).raw(nar).u64(0))
		p.send(errorV126("cannot add path '" + pathA + "' because it lacks a valid signature"))
		p.expect("next", isValidReq())
		p.send(wb(nil).last().bool(false))
	})
	err := c.AddToStoreNar(ctxT(t), info, bytes.NewReader(nar), false, false)
	var de *DaemonError
	if !errors.As(err, &de) || !strings.Contains(de.Message, "lacks a valid signature") {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.IsValidPath(ctxT(t), pathA); err != nil {
		t.Errorf("after the error: %v", err)
	}
}

func TestAddToStoreNarErrorMidUpload(t *testing.T) {
	// A daemon that rejects the import while frames are still coming: the
	// client stops writing and returns the daemon's error. The daemon
	// reads nothing more until the client has returned (the pipe has no
	// buffer): a client that went on writing would never return.
	nar := testNar(strings.Repeat("y", 1<<20))
	info := PathInfo{Path: pathA, NarHash: sha256hex(nar), NarSize: uint64(len(nar))}
	returned := make(chan struct{})
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", addReq(info, false, false))
		p.expect("frame 1", wb(nil).u64(frameSize).raw(nar[:frameSize]))
		p.send(errorV126("hash mismatch importing path"))
		select {
		case <-returned:
		case <-time.After(peerTimeout):
			t.Errorf("the client did not return while the daemon stopped reading")
		}
		p.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _ := io.Copy(io.Discard, p.conn); n >= int64(len(nar)-frameSize) {
			t.Errorf("client kept uploading: %d more bytes", n)
		}
	})
	err := c.AddToStoreNar(ctxT(t), info, bytes.NewReader(nar), false, false)
	close(returned)
	var de *DaemonError
	if !errors.As(err, &de) || de.Message != "hash mismatch importing path" || de.Op != "AddToStoreNar" || de.Path != pathA {
		t.Fatalf("err = %#v", err)
	}
	if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
		t.Errorf("after an interrupted upload: err = %v, want ErrBroken", err)
	}
}

func TestAddToStoreNarReaderFails(t *testing.T) {
	info := PathInfo{Path: pathA, NarHash: "00", NarSize: 100}
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", addReq(info, false, false))
		p.send(wb(nil).u64(stderrNext).str("importing\n"))
		p.expect("frame", wb(nil).u64(4).raw([]byte("abcd")))
		// No terminator may follow: the client hangs up instead.
		p.conn.SetReadDeadline(time.Now().Add(peerTimeout))
		if b, _ := io.ReadAll(p.conn); len(b) != 0 {
			t.Errorf("client sent %x after a failed read", b)
		}
	})
	boom := errors.New("disk on fire")
	nar := io.MultiReader(strings.NewReader("abcd"), iotestErr{boom})
	err := c.AddToStoreNar(ctxT(t), info, nar, false, false)
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want %v", err, boom)
	}
	if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
		t.Errorf("err = %v, want ErrBroken", err)
	}
}

type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }

func TestAddToStoreNarPulled(t *testing.T) {
	// Protocol 1.21–1.22: the daemon pulls the NAR with STDERR_READ.
	nar := testNar("pulled")
	info := PathInfo{Path: pathA, NarHash: sha256hex(nar), NarSize: uint64(len(nar))}
	c := fake(t, 0x116, func(p *peer) {
		p.expect("request", addReq(info, false, true))
		for off := 0; off < len(nar); off += 40 {
			p.send(wb(nil).u64(stderrRead).u64(40))
			p.expect("data", wb(nil).str(string(nar[off:min(off+40, len(nar))])))
		}
		p.send(wb(nil).last())
	})
	if err := c.AddToStoreNar(ctxT(t), info, bytes.NewReader(nar), false, true); err != nil {
		t.Fatal(err)
	}
}

func TestNarFromPath(t *testing.T) {
	nar := testNar("hello from dep\n")
	good := sha256hex(nar)
	narReq := wb(nil).u64(38).str(pathB)
	qpiReq := wb(nil).u64(26).str(pathB)

	t.Run("ok", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryPathInfo", qpiReq)
			p.send(pathInfoReply(good, uint64(len(nar))))
			p.expect("NarFromPath", narReq)
			p.send(wb(nil).last().raw(nar)) // unframed, no length
			p.expect("next", isValidReq())
			p.send(wb(nil).last().bool(true))
		})
		var buf bytes.Buffer
		info, err := c.NarFromPath(ctxT(t), pathB, &buf)
		if err != nil || !bytes.Equal(buf.Bytes(), nar) || info.NarHash != good {
			t.Fatalf("NarFromPath = %v; got %d bytes", err, buf.Len())
		}
		if _, err := c.IsValidPath(ctxT(t), pathA); err != nil {
			t.Error(err)
		}
	})
	t.Run("hash mismatch", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryPathInfo", qpiReq)
			p.send(pathInfoReply(sha256hex([]byte("other")), uint64(len(nar))))
			p.expect("NarFromPath", narReq)
			p.send(wb(nil).last().raw(nar))
		})
		_, err := c.NarFromPath(ctxT(t), pathB, io.Discard)
		if !errors.Is(err, ErrHashMismatch) || IsConnectionError(err) {
			t.Fatalf("err = %v, want ErrHashMismatch", err)
		}
		if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
			t.Errorf("after a mismatch: err = %v, want ErrBroken", err)
		}
	})
	t.Run("not valid", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryPathInfo", qpiReq)
			p.send(wb(nil).last().bool(false))
		})
		if _, err := c.NarFromPath(ctxT(t), pathB, io.Discard); !errors.Is(err, ErrNotValid) {
			t.Fatalf("err = %v, want ErrNotValid", err)
		}
	})
	t.Run("vanished", func(t *testing.T) {
		// Collected between the two requests: Nix 2.8 sends an error
		// where the NAR should be, then hangs up.
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryPathInfo", qpiReq)
			p.send(pathInfoReply(good, uint64(len(nar))))
			p.expect("NarFromPath", narReq)
			p.send(wb(nil).last().raw(errorV126("getting status of '/nix/store/…': No such file or directory")))
		})
		_, err := c.NarFromPath(ctxT(t), pathB, io.Discard)
		var de *DaemonError
		if !errors.As(err, &de) || !strings.Contains(de.Message, "No such file") {
			t.Fatalf("err = %v", err)
		}
		if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
			t.Errorf("err = %v, want ErrBroken", err)
		}
	})
	t.Run("sink fails", func(t *testing.T) {
		c := fake(t, 0x122, func(p *peer) {
			p.expect("QueryPathInfo", qpiReq)
			p.send(pathInfoReply(good, uint64(len(nar))))
			p.expect("NarFromPath", narReq)
			p.send(wb(nil).last().raw(nar))
			p.expect("next", isValidReq())
			p.send(wb(nil).last().bool(true))
		})
		boom := errors.New("disk full")
		if _, err := c.NarFromPath(ctxT(t), pathB, failWriter{boom}); !errors.Is(err, boom) {
			t.Fatalf("err = %v, want %v", err, boom)
		}
		if _, err := c.IsValidPath(ctxT(t), pathA); err != nil {
			t.Errorf("connection lost after a sink error: %v", err)
		}
	})
}

type failWriter struct{ err error }

func (w failWriter) Write([]byte) (int, error) { return 0, w.err }

package store

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"
)

// fuzzTransport feeds a Conn canned bytes and swallows what it writes.
type fuzzTransport struct{ r io.Reader }

func (f *fuzzTransport) Read(p []byte) (int, error)      { return f.r.Read(p) }
func (f *fuzzTransport) Write(p []byte) (int, error)     { return len(p), nil }
func (f *fuzzTransport) Close() error                    { return nil }
func (f *fuzzTransport) SetReadDeadline(time.Time) error { return nil }

var fuzzVersions = []int{0x115, 0x116, 0x119, 0x11a, 0x11b, 0x122, 0x123}

// fuzzSeeds are daemon byte sequences from the unit tests.
func fuzzSeeds() []wb {
	nar := testNar("hello")
	return []wb{
		wb(nil).last().bool(true),
		errorV126("cannot add path", "while importing", "\x1b[1mwhile\x1b[0m copying"),
		errorV125("\x1b[31;1merror:\x1b[0m path is not valid", 1),
		wb(nil).u64(stderrNext).str("warning: x\n").
			u64(stderrStartActivity).u64(7).u64(3).u64(108).str("copying").u64(2).u64(1).str(pathA).u64(0).u64(5).u64(3).
			u64(stderrResult).u64(7).u64(105).u64(4).u64(0).u64(10).u64(0).u64(100).u64(0).u64(1).u64(0).u64(0).
			u64(stderrStopActivity).u64(7).last(),
		pathInfoReply(sha256hex(nar), uint64(len(nar))),
		wb(nil).last().strs(drvB).strs(pathA).strs().u64(251).u64(792),
		wb(nil).u64(stderrRead).u64(40).u64(stderrRead).u64(40).last(),
		wb(nil).u64(stderrWrite).str("data").last(),
		wb(nil).u64(stderrNext).u64(3).raw([]byte("abc\x00\x00\x01\x00\x00")),
		wb(nil).u64(stderrNext).u64(1 << 40),
		wb(nil).last().u64(maxListLen + 1),
		wb(nil).u64(workerMagic2).u64(0x122).str("2.8.0").last(),
		wb(nil).u64(workerMagic2).u64(0x123).str("2.15").u64(1).last(),
	}
}

// checkAlloc fails if fn allocates far more than its input can justify.
func checkAlloc(t *testing.T, n int, fn func()) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(4<<20+16*n); got > limit {
		t.Fatalf("%d bytes of input allocated %d bytes", n, got)
	}
}

// wellKnown reports whether err is one a hostile peer may cause.
func wellKnown(err error) bool {
	var de *DaemonError
	return err == nil || errors.As(err, &de) || errors.Is(err, ErrProtocol) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "more data than there is") || strings.Contains(err.Error(), "older than")
}

// FuzzStderrLoop feeds hostile bytes to the log-stream decoder and then to
// the reply decoders: they must fail cleanly, never panic, and allocate in
// proportion to the input only.
func FuzzStderrLoop(f *testing.F) {
	for i, s := range fuzzSeeds() {
		f.Add(byte(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, version byte, data []byte) {
		c := newConn(Location{Mode: Daemon, Socket: "/fuzz"}, &fuzzTransport{r: bytes.NewReader(data)})
		c.protocol = fuzzVersions[int(version)%len(fuzzVersions)]
		c.SetLogger(func(Event) {})
		checkAlloc(t, len(data), func() {
			err := c.stderrLoop(bytes.NewReader(make([]byte, 100)), io.Discard)
			if !wellKnown(err) {
				t.Fatalf("stderrLoop: unexpected error %v", err)
			}
			if err != nil {
				return
			}
			if _, err := c.readPathInfo(pathA); !wellKnown(err) {
				t.Fatalf("readPathInfo: unexpected error %v", err)
			}
			c.dec.strs()
			c.readFields()
		})
	})
}

// FuzzHandshake feeds hostile bytes to the client's handshake.
func FuzzHandshake(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newConn(Location{Mode: Daemon, Socket: "/fuzz"}, &fuzzTransport{r: bytes.NewReader(data)})
		checkAlloc(t, len(data), func() {
			if err := c.handshakeSteps(); !wellKnown(err) {
				t.Fatalf("handshake: unexpected error %v", err)
			}
		})
	})
}

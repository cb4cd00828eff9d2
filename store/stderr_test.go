package store

import (
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// isValidReq is IsValidPath's request for pathA.
func isValidReq() wb { return wb(nil).u64(uint64(opIsValidPath)).str(pathA) }

// errorV126 is STDERR_ERROR in the ≥ 1.26 format.
func errorV126(msg string, traces ...string) wb {
	b := wb(nil).u64(stderrError).str("Error").u64(0).str("Error").str(msg).u64(0).u64(uint64(len(traces)))
	for _, tr := range traces {
		b = b.u64(0).str(tr)
	}
	return b
}

// errorV125 is STDERR_ERROR before 1.26.
func errorV125(msg string, status uint64) wb {
	return wb(nil).u64(stderrError).str(msg).u64(status)
}

func TestStderrErrorFormats(t *testing.T) {
	for _, tc := range []struct {
		name    string
		version int
		reply   wb
		want    DaemonError
	}{
		{
			name:    "1.25",
			version: 0x119,
			reply:   errorV125("\x1b[31;1merror:\x1b[0m path '\x1b[35;1m"+pathA+"\x1b[0m' is not valid", 1),
			want:    DaemonError{Op: "IsValidPath", Path: pathA, Message: "path '" + pathA + "' is not valid", Status: 1},
		},
		{
			name:    "1.34 with traces",
			version: 0x122,
			reply:   errorV126("cannot add path '\x1b[35;1m"+pathA+"\x1b[0m'\n", "while importing", "\x1b[1mwhile\x1b[0m copying"),
			want: DaemonError{Op: "IsValidPath", Path: pathA, Message: "cannot add path '" + pathA + "'",
				Traces: []string{"while importing", "while copying"}, Status: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake(t, tc.version, func(p *peer) {
				p.expect("request", isValidReq())
				p.send(tc.reply)
				// The connection survives: the next request is answered.
				p.expect("second request", isValidReq())
				p.send(wb(nil).last().bool(true))
			})
			_, err := c.IsValidPath(ctxT(t), pathA)
			var de *DaemonError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a DaemonError", err)
			}
			if !reflect.DeepEqual(*de, tc.want) {
				t.Errorf("DaemonError = %#v\nwant %#v", *de, tc.want)
			}
			if !strings.Contains(err.Error(), "store unix:///fake/socket: IsValidPath "+pathA+": ") {
				t.Errorf("error %q does not name the store, op and path", err)
			}
			if IsConnectionError(err) {
				t.Errorf("IsConnectionError(%v) = true", err)
			}
			if ok, err := c.IsValidPath(ctxT(t), pathA); err != nil || !ok {
				t.Errorf("after the error: IsValidPath = %v, %v", ok, err)
			}
		})
	}
}

func TestStderrEvents(t *testing.T) {
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", isValidReq())
		var b wb
		b = b.u64(stderrNext).str("\x1b[33;1mwarning:\x1b[0m ignoring untrusted substituter\n")
		b = b.u64(stderrStartActivity).u64(7).u64(uint64(LvlInfo)).u64(uint64(ActSubstitute)).
			str("copying path '\x1b[35;1m" + pathA + "\x1b[0m' from 'http://cache'").
			u64(2).u64(1).str(pathA).u64(1).str("http://cache").u64(3)
		b = b.u64(stderrResult).u64(7).u64(uint64(ResProgress)).
			u64(4).u64(0).u64(10).u64(0).u64(100).u64(0).u64(1).u64(0).u64(0)
		b = b.u64(stderrResult).u64(7).u64(uint64(ResBuildLogLine)).u64(1).u64(1).str("\x1b[1mhello\x1b[0m")
		b = b.u64(stderrStopActivity).u64(7)
		p.send(b.last().bool(true))
	})
	var mu sync.Mutex
	var got []Event
	c.SetLogger(func(ev Event) {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	})
	if ok, err := c.IsValidPath(ctxT(t), pathA); err != nil || !ok {
		t.Fatalf("IsValidPath = %v, %v", ok, err)
	}
	want := []Event{
		{Kind: Log, Text: "warning: ignoring untrusted substituter"},
		{Kind: StartActivity, ActivityID: 7, Level: LvlInfo, ActivityType: ActSubstitute,
			Text: "copying path '" + pathA + "' from 'http://cache'", Fields: []any{pathA, "http://cache"}, Parent: 3},
		{Kind: Result, ActivityID: 7, ResultType: ResProgress, Fields: []any{uint64(10), uint64(100), uint64(1), uint64(0)}},
		{Kind: Result, ActivityID: 7, ResultType: ResBuildLogLine, Fields: []any{"hello"}},
		{Kind: StopActivity, ActivityID: 7},
	}
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("events:\n got  %#v\n want %#v", got, want)
	}
}

func TestStripANSI(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"\x1b[31;1merror:\x1b[0m x", "error: x"},
		{"a\x1b]8;;http://x\x07link\x1b]8;;\x1b\\b", "alinkb"}, // OSC 8 hyperlinks
		{"\x1bMx", "x"},                                        // two-byte escape
		{"\x1b(Bx", "(Bx"},                                     // a stray ESC goes, the rest stays (as in Nix)
		{"trailing\x1b", "trailing"},
		{"\x1b[", ""},
	} {
		if got := stripANSI(tc.in); got != tc.want {
			t.Errorf("stripANSI(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// brokenAfter checks that a reply ends the connection with an error wrapping
// want, and that the next call fails at once without traffic.
func brokenAfter(t *testing.T, reply wb, want error) {
	t.Helper()
	c := fake(t, 0x122, func(p *peer) {
		p.expect("request", isValidReq())
		p.send(reply)
		p.expectSilence(100 * time.Millisecond)
	})
	_, err := c.IsValidPath(ctxT(t), pathA)
	if !errors.Is(err, want) || !errors.Is(err, ErrBroken) {
		t.Fatalf("err = %v, want %v and ErrBroken", err, want)
	}
	start := time.Now()
	_, err = c.IsValidPath(ctxT(t), pathA)
	if !errors.Is(err, ErrBroken) || !IsConnectionError(err) {
		t.Fatalf("second call: err = %v, want ErrBroken", err)
	}
	if time.Since(start) > 50*time.Millisecond {
		t.Errorf("second call took %v, want an immediate failure", time.Since(start))
	}
}

func TestNonZeroPaddingRejected(t *testing.T) {
	b := wb(nil).u64(stderrNext).u64(3).raw([]byte("abc\x00\x00\x01\x00\x00"))
	brokenAfter(t, b, ErrProtocol)
}

func TestOversizedLengthRejected(t *testing.T) {
	brokenAfter(t, wb(nil).u64(stderrNext).u64(1<<40), ErrProtocol)
}

func TestUnknownMessageRejected(t *testing.T) {
	brokenAfter(t, wb(nil).u64(0x12345678), ErrProtocol)
	brokenAfter(t, wb(nil).u64(stderrStartActivity).u64(1).u64(0).u64(0).str("").u64(1).u64(2), ErrProtocol) // field kind 2
	brokenAfter(t, errorV126("x")[:len(errorV126("x"))-16].u64(1).u64(0), ErrProtocol)                       // havePos ≠ 0
	brokenAfter(t, wb(nil).u64(stderrRead).u64(8), ErrProtocol)                                              // no source
}

func TestDaemonHangsUpAfterError(t *testing.T) {
	// Nix 2.8 sends a connection-fatal error twice, then closes.
	for _, tc := range []struct {
		name  string
		reply wb
	}{
		{"second error", append(errorV126("repairing is not allowed"), errorV126("repairing is not allowed")...)},
		{"EOF", errorV126("repairing is not allowed")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake(t, 0x122, func(p *peer) {
				p.expect("request", isValidReq())
				p.send(tc.reply)
			})
			c.errorProbe = peerTimeout // returns at EOF; a slow machine must not turn EOF into silence
			_, err := c.IsValidPath(ctxT(t), pathA)
			var de *DaemonError
			if !errors.As(err, &de) || de.Message != "repairing is not allowed" {
				t.Fatalf("err = %v, want the DaemonError", err)
			}
			if _, err := c.IsValidPath(ctxT(t), pathA); !errors.Is(err, ErrBroken) {
				t.Fatalf("next call: err = %v, want ErrBroken", err)
			}
		})
	}
}

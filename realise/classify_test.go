package realise

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-aurora/nix-aurora/store"
)

// The Nix versions of testdata/daemon (see its README): Debian bookworm's,
// trixie's and sid's nix-bin.
var capturedVersions = []string{"2.8.0", "2.26.3", "2.34.8"}

// capturedCases are the failures captured from each version, and whether
// nix-init must retry them.
var capturedCases = []struct {
	name      string
	transient bool
	cause     string // a fragment the explained error must show
}{
	{"refused", true, "connect to server"},
	{"refused-nar", true, "connect to server"},
	{"reset-nar", true, "Failure when receiving data"},
	{"reset-narinfo", true, "Failure when receiving data"},
	{"stall-nar", true, "Timeout was reached"},
	{"503-nar", true, "HTTP error 503"},
	{"503-narinfo", true, "HTTP error 503"},
	{"503-dependency", true, "HTTP error 503"},
	{"404-narinfo", false, "no substituter has"},
	{"404-nar", false, "does not exist in binary cache"},
	{"untrusted-key", false, untrustedKeyHint},
	{"nar-hash-mismatch", false, "hash mismatch importing path"},
}

// capture is one recorded substitution: the daemon's events and how the
// operations ended.
type capture struct {
	daemon string
	events []store.Event
	err    error // as Daemon.Substitute's operations return it
}

// capturedLine is a line of a capture file.
type capturedLine struct {
	Daemon string `json:"daemon"`
	Kind   string `json:"kind"`
	ID     uint64 `json:"id"`
	Level  uint64 `json:"level"`
	Type   uint64 `json:"type"`
	Result uint64 `json:"result"`
	Text   string `json:"text"`
	Fields []any  `json:"fields"`
	Parent uint64 `json:"parent"`

	Op      string `json:"op"`
	Unknown int    `json:"unknown"`
	Error   *struct {
		Message string   `json:"message"`
		Traces  []string `json:"traces"`
		Level   int      `json:"level"`
		Status  int      `json:"status"`
	} `json:"error"`
}

func loadCapture(t *testing.T, file string) capture {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var c capture
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var l capturedLine
		d := json.NewDecoder(strings.NewReader(sc.Text()))
		d.UseNumber()
		if err := d.Decode(&l); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		switch {
		case l.Daemon != "":
			c.daemon = l.Daemon
		case l.Kind != "":
			c.events = append(c.events, l.event(t))
		case l.Op != "":
			c.err = l.opError()
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (l capturedLine) event(t *testing.T) store.Event {
	var fields []any
	for _, f := range l.Fields {
		switch v := f.(type) {
		case string:
			fields = append(fields, v)
		case json.Number:
			n, err := v.Int64()
			if err != nil {
				t.Fatalf("field %v: %v", v, err)
			}
			fields = append(fields, uint64(n))
		}
	}
	ev := store.Event{ActivityID: l.ID, Text: l.Text, Fields: fields}
	switch l.Kind {
	case "log":
		ev.Kind = store.Log
	case "start":
		ev.Kind, ev.Level, ev.ActivityType, ev.Parent = store.StartActivity, store.Verbosity(l.Level), store.ActivityType(l.Type), l.Parent
	case "stop":
		ev.Kind = store.StopActivity
	case "result":
		ev.Kind, ev.ResultType = store.Result, store.ResultType(l.Result)
	default:
		t.Fatalf("event kind %q", l.Kind)
	}
	return ev
}

// opError is the error of the operation as substitute wraps it.
func (l capturedLine) opError() error {
	if l.Error != nil {
		de := &store.DaemonError{Op: l.Op, Message: l.Error.Message, Traces: l.Error.Traces, Level: l.Error.Level, Status: l.Error.Status}
		if l.Op == "QueryMissing" {
			return fmt.Errorf("query missing paths: %w", de)
		}
		return fmt.Errorf("substitute 1 paths: %w", de)
	}
	if l.Op == "QueryMissing" && l.Unknown > 0 {
		return &NotFoundError{Paths: []string{"/nix/store/c2j6zlyihln9d5nxggwj4fka0hr48bmi-classify-capture-payload"}, Caches: []string{"http://127.0.0.1"}}
	}
	return nil
}

// TestClassifyCapturedFailures replays what real daemons of each version
// sent while substituting from a misbehaving cache through what nix-init
// runs on it (the daemon substituter's log, then the attempt's tracker) and
// checks that each failure is transient or permanent on every version, and
// says why.
func TestClassifyCapturedFailures(t *testing.T) {
	for _, v := range capturedVersions {
		for _, tc := range capturedCases {
			t.Run(v+"/"+tc.name, func(t *testing.T) {
				c := loadCapture(t, filepath.Join("testdata", "daemon", v, tc.name+".jsonl"))
				if c.daemon != v {
					t.Fatalf("captured from Nix %q", c.daemon)
				}
				if c.err == nil {
					t.Fatal("the capture has no failure")
				}
				tr := newTracker(&Config{}, &Report{})
				l := newSubstitutionLog()
				for _, ev := range c.events {
					l.event(ev)
					tr.event(ev)
				}
				err := tr.diagnose(l.explain(c.err))
				if got := Transient(err); got != tc.transient {
					t.Errorf("Nix %s: transient = %v, want %v: %v", v, got, tc.transient, err)
				}
				if !strings.Contains(err.Error(), tc.cause) {
					t.Errorf("Nix %s: the error does not say %q: %v", v, tc.cause, err)
				}
			})
		}
	}
}

// TestSignatureHintEveryVersion: the daemon's refusal of an imported path
// (AddToStoreNar, direct substitution) for its signature is recognised in
// the wording of every version.
func TestSignatureHintEveryVersion(t *testing.T) {
	for _, v := range capturedVersions {
		c := loadCapture(t, filepath.Join("testdata", "daemon", v, "addtostorenar-untrusted-key.jsonl"))
		var de *store.DaemonError
		if !errors.As(c.err, &de) {
			t.Fatalf("Nix %s: no daemon error: %v", v, c.err)
		}
		if !refusedSignature(de.Message) || !strings.HasSuffix(withSignatureHint(de.Message), "("+untrustedKeyHint+")") {
			t.Errorf("Nix %s: %q is not recognised as a refused signature", v, de.Message)
		}
		if Transient(c.err) {
			t.Errorf("Nix %s: a refused signature is transient", v)
		}
	}
	if refusedSignature("unable to download 'http://c/nar/x.nar': HTTP error 503") {
		t.Error("a 503 is taken for a refused signature")
	}
}

// TestClassifyByTransferStructure: a failed download is recognised by the
// transfer it names, not by curl's wording, which changes with libcurl;
// only an HTTP 4xx status (but 408 and 429) makes it permanent.
func TestClassifyByTransferStructure(t *testing.T) {
	const url = "http://127.0.0.1:9/nar/abc.nar"
	for _, tc := range []struct {
		line      string
		transient bool
	}{
		{"error: unable to download '" + url + "': Unheard-of network trouble (99)", true},
		{"error: unable to download '" + url + "': HTTP error 502", true},
		{"error: unable to download '" + url + "': HTTP error 429", true},
		{"error: unable to download '" + url + "': HTTP error 403 ('Forbidden')", false},
		{"error: unable to download '" + url + "': HTTP error 410", false},
	} {
		l := newSubstitutionLog()
		for _, ev := range []store.Event{
			{Kind: store.StartActivity, ActivityID: 7, ActivityType: store.ActFileTransfer, Fields: []any{url}},
			{Kind: store.Log, Text: "warning: unable to download '" + url + "': Unheard-of network trouble (99); retrying in 300 ms (attempt 1/5)"},
			{Kind: store.StopActivity, ActivityID: 7},
			{Kind: store.Log, Text: tc.line},
		} {
			l.event(ev)
		}
		err := l.explain(fmt.Errorf("substitute 1 paths: %w", &store.DaemonError{Message: "build of '/nix/store/x' failed", Status: 1}))
		if got := Transient(err); got != tc.transient {
			t.Errorf("%s: transient = %v, want %v (%v)", tc.line, got, tc.transient, err)
		}
		if !strings.Contains(err.Error(), strings.TrimPrefix(tc.line, "error: ")) {
			t.Errorf("%s: the error does not give the cause: %v", tc.line, err)
		}
	}

	// The same words about a URL nothing fetched decide nothing here.
	l := newSubstitutionLog()
	l.event(store.Event{Kind: store.Log, Text: "error: unable to download '" + url + "': Unheard-of network trouble (99)"})
	orig := fmt.Errorf("substitute 1 paths: %w", &store.DaemonError{Message: "build of '/nix/store/x' failed", Status: 1})
	if err := l.explain(orig); err != orig {
		t.Errorf("explained by a transfer that did not happen: %v", err)
	}
}

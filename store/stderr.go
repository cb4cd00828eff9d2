package store

import (
	"fmt"
	"io"
	"strings"
)

// The daemon's log stream (nix-reference 1.4): after every request it sends
// messages until STDERR_LAST, after which the reply follows, or STDERR_ERROR.
const (
	stderrNext          = 0x6f6c6d67
	stderrRead          = 0x64617461
	stderrWrite         = 0x64617416
	stderrLast          = 0x616c7473
	stderrError         = 0x63787470
	stderrStartActivity = 0x53545254
	stderrStopActivity  = 0x53544f50
	stderrResult        = 0x52534c54
)

// maxReadAnswer bounds one answer to STDERR_READ.
const maxReadAnswer = 64 << 10

// EventKind says what an Event reports.
type EventKind int

const (
	Log           EventKind = iota + 1 // a log line (STDERR_NEXT)
	StartActivity                      // an activity began
	StopActivity                       // an activity ended
	Result                             // an activity reported a result
)

func (k EventKind) String() string {
	switch k {
	case Log:
		return "log"
	case StartActivity:
		return "start"
	case StopActivity:
		return "stop"
	case Result:
		return "result"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Verbosity is a Nix log level.
type Verbosity uint64

const (
	LvlError Verbosity = iota
	LvlWarn
	LvlNotice
	LvlInfo
	LvlTalkative
	LvlChatty
	LvlDebug
	LvlVomit
)

// ActivityType is the kind of a daemon activity.
type ActivityType uint64

const (
	ActUnknown       ActivityType = 0
	ActCopyPath      ActivityType = 100
	ActFileTransfer  ActivityType = 101
	ActRealise       ActivityType = 102
	ActCopyPaths     ActivityType = 103
	ActBuilds        ActivityType = 104
	ActBuild         ActivityType = 105
	ActOptimiseStore ActivityType = 106
	ActVerifyPaths   ActivityType = 107
	ActSubstitute    ActivityType = 108 // Fields: store path, substituter URL
	ActQueryPathInfo ActivityType = 109
	ActPostBuildHook ActivityType = 110
	ActBuildWaiting  ActivityType = 111
)

// ResultType is the kind of an activity's result.
type ResultType uint64

const (
	ResFileLinked       ResultType = 100
	ResBuildLogLine     ResultType = 101
	ResUntrustedPath    ResultType = 102
	ResCorruptedPath    ResultType = 103
	ResSetPhase         ResultType = 104
	ResProgress         ResultType = 105 // Fields: done, expected, running, failed
	ResSetExpected      ResultType = 106 // Fields: activity type, count
	ResPostBuildLogLine ResultType = 107
)

// Event is one message of the daemon's log stream.
type Event struct {
	Kind         EventKind
	Level        Verbosity    // StartActivity; Log lines carry no level (0)
	ActivityID   uint64       // StartActivity, StopActivity, Result
	ActivityType ActivityType // StartActivity
	ResultType   ResultType   // Result
	Text         string       // Log: the line without its newline; StartActivity: its description
	Fields       []any        // StartActivity, Result: each a uint64 or a string
	Parent       uint64       // StartActivity: the parent activity, 0 for none
}

// Logger returns the function set with SetLogger, nil if none, so that an
// operation can watch the stream for a while and pass every event on.
func (c *Conn) Logger() func(Event) {
	if fn := c.logger.Load(); fn != nil {
		return *fn
	}
	return nil
}

// stderrLoop reads the log stream up to STDERR_LAST (nil) or STDERR_ERROR
// (*DaemonError). src answers STDERR_READ and sink takes STDERR_WRITE, for
// the ops that use them; any other error means the stream is lost.
func (c *Conn) stderrLoop(src io.Reader, sink io.Writer) error {
	d := &c.dec
	for {
		tag := d.u64()
		if d.err != nil {
			return d.err
		}
		switch tag {
		case stderrLast:
			return nil
		case stderrError:
			return c.readError()
		case stderrNext:
			s := d.str()
			if d.err != nil {
				return d.err
			}
			c.emit(Event{Kind: Log, Text: strings.TrimSuffix(stripANSI(s), "\n")})
		case stderrStartActivity:
			ev := Event{Kind: StartActivity}
			ev.ActivityID = d.u64()
			ev.Level = Verbosity(d.u64())
			ev.ActivityType = ActivityType(d.u64())
			ev.Text = stripANSI(d.str())
			ev.Fields = c.readFields()
			ev.Parent = d.u64() // present from protocol 1.20 on, older than we accept
			if d.err != nil {
				return d.err
			}
			c.emit(ev)
		case stderrStopActivity:
			id := d.u64()
			if d.err != nil {
				return d.err
			}
			c.emit(Event{Kind: StopActivity, ActivityID: id})
		case stderrResult:
			ev := Event{Kind: Result}
			ev.ActivityID = d.u64()
			ev.ResultType = ResultType(d.u64())
			ev.Fields = c.readFields()
			if d.err != nil {
				return d.err
			}
			c.emit(ev)
		case stderrRead:
			n := d.u64()
			if d.err != nil {
				return d.err
			}
			if err := c.answerRead(src, n); err != nil {
				return err
			}
		case stderrWrite:
			b := d.bytes()
			if d.err != nil {
				return d.err
			}
			if sink == nil {
				return protocolErrorf("daemon sent data (STDERR_WRITE) to an operation that takes none")
			}
			if _, err := sink.Write(b); err != nil {
				return fmt.Errorf("writing the daemon's data: %w", err)
			}
		default:
			return protocolErrorf("unknown log message type %#x", tag)
		}
	}
}

// answerRead sends up to n bytes of src for STDERR_READ. At the end of src
// there is nothing sensible to answer (an empty string makes the daemon ask
// again forever), so it fails and the connection is given up, as Nix does.
func (c *Conn) answerRead(src io.Reader, n uint64) error {
	if src == nil {
		return protocolErrorf("daemon asked for data (STDERR_READ) from an operation that sends none")
	}
	buf := make([]byte, min(n, maxReadAnswer))
	k := 0
	if len(buf) > 0 {
		var err error
		k, err = io.ReadAtLeast(src, buf, 1)
		if err == io.EOF {
			return fmt.Errorf("the daemon asked for more data than there is (truncated input?)")
		} else if err != nil && k == 0 {
			return fmt.Errorf("reading the data to send: %w", err)
		}
	}
	c.enc.bytes(buf[:k])
	return c.flush()
}

// readFields reads an activity's or result's fields.
func (c *Conn) readFields() []any {
	d := &c.dec
	n := d.count("field")
	fs := make([]any, 0, min(n, 16))
	for i := 0; i < n && d.err == nil; i++ {
		switch kind := d.u64(); kind {
		case 0:
			fs = append(fs, d.u64())
		case 1:
			fs = append(fs, stripANSI(d.str()))
		default:
			if d.err == nil {
				d.fail(protocolErrorf("unknown field type %d", kind))
			}
		}
	}
	return fs
}

// readError reads STDERR_ERROR's payload, in the format of the protocol.
func (c *Conn) readError() error {
	d := &c.dec
	if c.protocol < 0x11a { // before 1.26: message and exit status
		msg := d.str()
		status := d.u64()
		if d.err != nil {
			return d.err
		}
		msg = strings.TrimPrefix(CleanMessage(msg), "error: ")
		return &DaemonError{Message: msg, Status: int(min(status, 255))}
	}
	typ := d.str()
	level := d.u64()
	_ = d.str() // the error's name, always "Error"
	msg := d.str()
	havePos := d.u64()
	if d.err != nil {
		return d.err
	}
	if typ != "Error" {
		return protocolErrorf("error of type %q", typ)
	}
	if havePos != 0 {
		// No daemon sends positions (Nix writes 0 and asserts 0 on reading);
		// their layout is not part of the protocol.
		return protocolErrorf("error with a source position")
	}
	n := d.count("trace")
	var traces []string
	for i := 0; i < n && d.err == nil; i++ {
		if d.u64() != 0 && d.err == nil {
			return protocolErrorf("error trace with a source position")
		}
		if t := CleanMessage(d.str()); d.err == nil {
			traces = append(traces, t)
		}
	}
	if d.err != nil {
		return d.err
	}
	return &DaemonError{Message: CleanMessage(msg), Traces: traces, Level: int(min(level, 255)), Status: 1}
}

// CleanMessage is a message of Nix without colour escapes or trailing
// newlines.
func CleanMessage(s string) string { return strings.TrimRight(stripANSI(s), "\n") }

// stripANSI removes terminal escape sequences (colours, hyperlinks) from
// daemon messages, as Nix's filterANSIEscapes does.
func stripANSI(s string) string {
	if strings.IndexByte(s, 0x1b) < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != 0x1b {
			b.WriteByte(s[i])
			continue
		}
		if i+1 >= len(s) {
			break
		}
		switch s[i+1] {
		case '[': // CSI: parameter and intermediate bytes, then a final byte
			j := i + 2
			for j < len(s) && s[j] >= 0x20 && s[j] <= 0x3f {
				j++
			}
			if j < len(s) && s[j] >= 0x40 && s[j] <= 0x7e {
				i = j
			} else {
				i = j - 1
			}
		case ']': // OSC: up to BEL or ESC '\'
			j := i + 2
			for j < len(s) && s[j] != 0x07 && !(s[j] == 0x1b && j+1 < len(s) && s[j+1] == '\\') {
				j++
			}
			if j < len(s) && s[j] == 0x1b {
				j++
			}
			i = j
		default: // a two-byte escape, else a stray ESC
			if s[i+1] >= 0x40 && s[i+1] <= 0x5f {
				i++
			}
		}
	}
	return b.String()
}

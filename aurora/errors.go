package aurora

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The stage at which Aurora rejects a configuration. A *ValidationError
// matches exactly one of them with errors.Is.
var (
	// ErrSchema: the document does not load (pystachio's strict constructor,
	// or JSON syntax): unknown attributes, nulls, wrong types.
	ErrSchema = errors.New("does not match Aurora's job schema")
	// ErrClient: `aurora job create --read-json` refuses the job.
	ErrClient = errors.New("rejected by the Aurora client")
	// ErrScheduler: the client sends the job, the scheduler refuses it.
	ErrScheduler = errors.New("rejected by the Aurora scheduler")
)

// Problem is one reason for a rejection. Path locates it in the JSON
// document ("jobs[0].task.processes[1].name"; "" is the document or job
// itself). Message is Aurora's own text where Aurora has one.
type Problem struct {
	Path    string
	Message string
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// ValidationError lists every problem found at one stage.
type ValidationError struct {
	Stage    error // ErrSchema, ErrClient or ErrScheduler
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("aurora: job configuration ")
	b.WriteString(e.Stage.Error())
	if len(e.Problems) == 1 {
		b.WriteString(": ")
		b.WriteString(e.Problems[0].String())
		return b.String()
	}
	fmt.Fprintf(&b, " (%d problems):", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		b.WriteString(p.String())
	}
	return b.String()
}

// Is reports whether target is the stage of e.
func (e *ValidationError) Is(target error) bool { return target == e.Stage }

// Has reports whether some problem at path has exactly message.
func (e *ValidationError) Has(path, message string) bool {
	for _, p := range e.Problems {
		if p.Path == path && p.Message == message {
			return true
		}
	}
	return false
}

func newError(stage error, problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	return &ValidationError{Stage: stage, Problems: problems}
}

// problems collects Problems under a path prefix.
type problems struct {
	list []Problem
}

func (ps *problems) add(path, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	ps.list = append(ps.list, Problem{Path: path, Message: msg})
}

// join builds a JSON path: join("jobs[0]", "task") = "jobs[0].task".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// mapKey is the path of a map entry: constraints[host], or
// constraints["a b"] when the key needs quoting.
func mapKey(path, key string) string {
	plain := key != ""
	for _, r := range key {
		if !(r < 0x80 && isIdentifier(string(r)) || r == '/') {
			plain = false
			break
		}
	}
	if plain {
		return path + "[" + key + "]"
	}
	return path + "[" + fmt.Sprintf("%q", key) + "]"
}

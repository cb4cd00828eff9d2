package aurora

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

// baseJob is the smallest job Aurora's client accepts.
const baseJob = `{
  "role": "alice", "cluster": "c1", "environment": "devel",
  "task": {
    "processes": [{"name": "hello", "cmdline": "echo hello"}],
    "resources": {"cpu": 1, "ram": 1048576, "disk": 1048576}
  }
}`

// patched applies a JSON merge patch (RFC 7386: objects merge, null deletes,
// anything else replaces) to baseJob.
func patched(t testing.TB, patch string) []byte {
	t.Helper()
	base, err := decodeExact(baseJob)
	if err != nil {
		t.Fatal(err)
	}
	if patch != "" {
		p, err := decodeExact(patch)
		if err != nil {
			t.Fatalf("bad patch %s: %v", patch, err)
		}
		base = mergePatch(base, p)
	}
	out, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// decodeExact decodes JSON keeping numbers as written, so that a patch can
// hold integers float64 cannot.
func decodeExact(data string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(data))
	dec.UseNumber()
	var v any
	err := dec.Decode(&v)
	return v, err
}

func mergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	for k, v := range p {
		if v == nil {
			delete(t, k)
			continue
		}
		t[k] = mergePatch(t[k], v)
	}
	return t
}

// parseJob parses a single-job document that must load.
func parseJob(t testing.TB, data []byte) Job {
	t.Helper()
	jobs, err := Parse(data)
	if err != nil {
		t.Fatalf("Parse(%s): %v", data, err)
	}
	if len(jobs) != 1 {
		t.Fatalf("Parse(%s): %d jobs", data, len(jobs))
	}
	return jobs[0]
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// problemsOf returns the problems of err, which must be a *ValidationError
// of the given stage (or nil).
func problemsOf(t testing.TB, err error, stage error) []Problem {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if !errors.Is(err, stage) {
		t.Fatalf("error %v is not %v", err, stage)
	}
	return ve.Problems
}

// wantProblems checks that got holds exactly want (in any order).
func wantProblems(t testing.TB, got []Problem, want ...Problem) {
	t.Helper()
	missing := map[Problem]bool{}
	for _, w := range want {
		missing[w] = true
	}
	var extra []string
	for _, g := range got {
		if missing[g] {
			delete(missing, g)
		} else {
			extra = append(extra, g.String())
		}
	}
	for m := range missing {
		t.Errorf("missing problem  %s", m)
	}
	if len(extra) > 0 {
		t.Errorf("unexpected problems:\n\t%s", strings.Join(extra, "\n\t"))
	}
}

func p(path, message string) Problem { return Problem{Path: path, Message: message} }

// wantAccepted checks that the base job with patch passes the client.
func wantAccepted(t *testing.T, patch string) {
	t.Helper()
	if err := parseJob(t, patched(t, patch)).Validate(); err != nil {
		t.Error(err)
	}
}

// wantRejected checks that the client refuses the base job with patch,
// with exactly the problems want.
func wantRejected(t *testing.T, patch string, want ...Problem) {
	t.Helper()
	err := parseJob(t, patched(t, patch)).Validate()
	if err == nil {
		t.Fatal("Validate accepted it")
	}
	wantProblems(t, problemsOf(t, err, ErrClient), want...)
}

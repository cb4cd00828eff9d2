package aurora

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse: Parse never panics; an accepted document encodes to JSON that
// parses back to an equal value; validating it never panics either.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.json")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"jobs": []}`, `{"jobs": [null]}`, `{"task": {"processes": [{"name": "a", "cmdline": "{{b}}"}]}}`,
		`{"instances": 1e3, "name": "{{&x&}}", "role": "{{thermos.ports[{{a}}]}}"}`,
		`{"task": {"constraints": [{"order": ["a", "a"]}], "processes": [{"name": "a", "cmdline": "{{cmdline}}"}]}}`,
		`{"constraints": {"dedicated": "x/y"}, "announce": {"portmap": {"a": "1"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseDocument(data)
		if err != nil {
			return
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		d2, err := ParseDocument(out)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", out, err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("re-parse differs:\n%s", out)
		}
		_ = d.Validate()
		_ = d.ValidateScheduler()
		for _, j := range d.Jobs {
			_ = j.Key()
			_ = j.Defaults()
		}
	})
}

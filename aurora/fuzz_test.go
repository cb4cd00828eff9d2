package aurora

import (
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
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
		if !reflect.DeepEqual(d.Jobs, d2.Jobs) || d.List != d2.List {
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

// FuzzParseInteger: parseInteger agrees with exact rational arithmetic on
// every JSON number of modest exponent: the value when it is a whole int64,
// an error otherwise.
func FuzzParseInteger(f *testing.F) {
	for _, s := range []string{
		"0", "-0", "7", "-9223372036854775808", "-9223372036854775809", "9223372036854775807", "9223372036854775808",
		"9007199254740993.0", "2.5", "1e3", "1E+3", "1e-3", "100e-2", "0.000e7", "92233720368547758.08e2", "-1.0e18",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var n json.Number
		if json.Unmarshal([]byte(s), &n) != nil || string(n) != s {
			return // not a JSON number as the decoder hands it over
		}
		if _, e, ok := strings.Cut(strings.ToLower(s), "e"); ok {
			if exp, err := strconv.Atoi(e); err != nil || exp > 1000 || exp < -1000 {
				return // big.Rat would take too long; the unit tests cover these
			}
		}
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("big.Rat refuses %s", s)
		}
		got, err := parseInteger(n)
		exact := r.IsInt() && r.Num().IsInt64()
		switch {
		case exact && err != nil:
			t.Fatalf("parseInteger(%s): %v, want %s", s, err, r.Num())
		case exact && got != r.Num().Int64():
			t.Fatalf("parseInteger(%s) = %d, want %s", s, got, r.Num())
		case !exact && err == nil:
			t.Fatalf("parseInteger(%s) = %d, want an error", s, got)
		}
	})
}

package aurora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Document is a parsed `--read-json` document: either one job, or
// {"jobs": [...]} (List is true).
type Document struct {
	Jobs []Job
	List bool
}

// Parse decodes a document strictly, as Aurora's client loads it: a
// document with a "jobs" key is a list of jobs, anything else one job. An
// unknown attribute at any level, a null anywhere, and a value of the wrong
// type are errors (a *ValidationError matching ErrSchema) naming the JSON
// path. Parse does not apply defaults and does not check values: see
// Job.Validate.
func Parse(data []byte) ([]Job, error) {
	d, err := ParseDocument(data)
	if err != nil {
		return nil, err
	}
	return d.Jobs, nil
}

// ParseDocument is Parse, remembering whether the document was a list.
func ParseDocument(data []byte) (*Document, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, newError(ErrSchema, []Problem{{Message: "invalid JSON: " + err.Error()}})
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, newError(ErrSchema, []Problem{{Message: "invalid JSON: extra data after the document"}})
	}
	var ps problems
	obj, ok := v.(map[string]any)
	if !ok {
		ps.add("", "expected an object (a job, or {\"jobs\": [...]}), got %s", describe(v))
		return nil, newError(ErrSchema, ps.list)
	}
	doc := &Document{}
	jobsValue, isList := obj["jobs"]
	if !isList {
		var j Job
		decodeValue(v, reflect.ValueOf(&j).Elem(), "", &ps)
		doc.Jobs = []Job{j}
	} else {
		doc.List = true
		for _, k := range sortedKeys(obj) {
			if k != "jobs" {
				ps.add("", "Unknown schema attribute %s", k)
			}
		}
		switch list := jobsValue.(type) {
		case nil:
			ps.add("jobs", nullMessage)
		case []any:
			if len(list) == 0 {
				ps.add("jobs", "No job defined in this config!")
			}
			doc.Jobs = make([]Job, len(list))
			for i, item := range list {
				decodeValue(item, reflect.ValueOf(&doc.Jobs[i]).Elem(), index("jobs", i), &ps)
			}
		default:
			ps.add("jobs", "expected a list of jobs, got %s", describe(jobsValue))
		}
	}
	if err := newError(ErrSchema, ps.list); err != nil {
		return nil, err
	}
	return doc, nil
}

// MarshalJSON encodes the document in the form it was read in.
func (d Document) MarshalJSON() ([]byte, error) {
	if !d.List && len(d.Jobs) == 1 {
		return json.Marshal(d.Jobs[0])
	}
	jobs := d.Jobs
	if jobs == nil {
		jobs = []Job{}
	}
	return json.Marshal(struct {
		Jobs []Job `json:"jobs"`
	}{jobs})
}

const nullMessage = "null is not allowed (Aurora rejects null for every attribute): omit the key instead"

// field is one attribute of a schema struct.
type field struct {
	name     string // JSON key
	index    int
	required bool
	def      string // JSON default, "" if none
}

var fieldCache sync.Map // reflect.Type → []field

func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{
			name:     name,
			index:    i,
			required: sf.Tag.Get("aurora") == "required",
			def:      sf.Tag.Get("default"),
		})
	}
	fieldCache.Store(t, fs)
	return fs
}

// schemaName is pystachio's name for a schema struct type.
func schemaName(t reflect.Type) string {
	if n, ok := schemaNames[t.Name()]; ok {
		return n
	}
	return t.Name()
}

// decodeValue decodes the generic JSON value v into rv (settable), adding a
// problem for every mismatch. It never panics on any input.
func decodeValue(v any, rv reflect.Value, path string, ps *problems) {
	if v == nil {
		ps.add(path, nullMessage)
		return
	}
	switch rv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		before := len(ps.list)
		decodeValue(v, nv.Elem(), path, ps)
		if len(ps.list) == before {
			rv.Set(nv)
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			ps.add(path, "expected an object (%s), got %s", schemaName(rv.Type()), describe(v))
			return
		}
		fs := fieldsOf(rv.Type())
		known := make(map[string]bool, len(fs))
		for _, f := range fs {
			known[f.name] = true
			if fv, ok := obj[f.name]; ok {
				decodeValue(fv, rv.Field(f.index), join(path, f.name), ps)
			}
		}
		for _, k := range sortedKeys(obj) {
			if !known[k] {
				ps.add(path, "Unknown schema attribute %s", k)
			}
		}
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			ps.add(path, "expected a string, got %s", describe(v))
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			ps.add(path, "expected a boolean (true or false), got %s", describe(v))
			return
		}
		rv.SetBool(b)
	case reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			ps.add(path, "expected an integer, got %s", describe(v))
			return
		}
		i, err := parseInteger(n)
		if err != nil {
			ps.add(path, "expected an integer, got %s", err)
			return
		}
		rv.SetInt(i)
	case reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			ps.add(path, "expected a number, got %s", describe(v))
			return
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) {
			ps.add(path, "expected a number, got %s (out of range)", n)
			return
		}
		rv.SetFloat(f)
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			ps.add(path, "expected a list, got %s", describe(v))
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(list), len(list))
		for i, item := range list {
			decodeValue(item, s.Index(i), index(path, i), ps)
		}
		rv.Set(s)
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			ps.add(path, "expected an object mapping strings to strings, got %s", describe(v))
			return
		}
		m := reflect.MakeMapWithSize(rv.Type(), len(obj))
		for _, k := range sortedKeys(obj) {
			ev := reflect.New(rv.Type().Elem()).Elem()
			before := len(ps.list)
			decodeValue(obj[k], ev, mapKey(path, k), ps)
			if len(ps.list) == before {
				m.SetMapIndex(reflect.ValueOf(k), ev)
			}
		}
		rv.Set(m)
	default:
		panic(fmt.Sprintf("aurora: schema type %s has no decoder", rv.Type()))
	}
}

// parseInteger accepts a JSON number with an integral value that fits an
// int64 (2, 2.0 and 2e3 alike, as Python's int() would); it rejects 2.5
// rather than truncate it as pystachio does. It works on the decimal digits,
// never through float64, which would round 2^53+1 to 2^53 and
// -9223372036854775809 to the smallest int64.
func parseInteger(n json.Number) (int64, error) {
	s := string(n)
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i, nil
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mantissa, exp, hasExp := strings.Cut(strings.ToLower(s), "e")
	whole, frac, _ := strings.Cut(mantissa, ".")
	digits := strings.TrimLeft(whole+frac, "0")
	// The value is digits × 10^shift; trailing zeros move into shift.
	trimmed := strings.TrimRight(digits, "0")
	shift := int64(len(digits)-len(trimmed)) - int64(len(frac))
	digits = trimmed
	if hasExp {
		e, err := strconv.ParseInt(exp, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("%s (not a number)", n)
		}
		// An exponent beyond int64 saturates, and so does the sum: either
		// way the value is far out of range, or far from whole.
		switch {
		case e > 0 && shift > math.MaxInt64-e:
			shift = math.MaxInt64
		case e < 0 && shift < math.MinInt64-e:
			shift = math.MinInt64
		default:
			shift += e
		}
	}
	switch {
	case digits == "":
		return 0, nil
	case shift < 0:
		return 0, fmt.Errorf("%s (not a whole number)", n)
	case shift > 19-int64(len(digits)): // more than 19 digits
		return 0, fmt.Errorf("%s (out of range for a 64-bit integer)", n)
	}
	text := digits + strings.Repeat("0", int(shift))
	if neg {
		text = "-" + text
	}
	i, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s (out of range for a 64-bit integer)", n)
	}
	return i, nil
}

// describe names a generic JSON value for messages.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		s := x
		if len(s) > 40 {
			s = s[:40] + "..."
		}
		return "string " + strconv.Quote(s)
	case json.Number:
		return "number " + string(x)
	case bool:
		return "boolean " + strconv.FormatBool(x)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

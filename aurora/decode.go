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
	"unicode/utf8"
)

// Document is a parsed `--read-json` document: either one job, or
// {"jobs": [...]} (List is true).
type Document struct {
	Jobs []Job
	List bool
	// warnings are the parser's: values Aurora's client coerces.
	warnings []Problem
	// checked are Validate's validators, one per job, kept so that
	// Warnings and ValidateScheduler need not analyse the jobs again (the
	// analysis is most of the time of a large job).
	checked []*validator
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
	if !utf8.Valid(data) {
		// Python's json reads the file as UTF-8 and fails; Go's decoder
		// would replace the bytes silently.
		bad := 0
		for bad < len(data) {
			r, size := utf8.DecodeRune(data[bad:])
			if r == utf8.RuneError && size <= 1 {
				break
			}
			bad += size
		}
		return nil, newError(ErrSchema, []Problem{{Message: fmt.Sprintf(
			"invalid JSON: 'utf8' codec can't decode byte 0x%02x in position %d", data[bad], bad)}})
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, newError(ErrSchema, []Problem{{Message: "invalid JSON: " + err.Error()}})
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, newError(ErrSchema, []Problem{{Message: "invalid JSON: extra data after the document"}})
	}
	dc := &decoder{templates: map[string]string{}}
	ps := &dc.ps
	obj, ok := v.(map[string]any)
	if !ok {
		ps.add("", "expected an object (a job, or {\"jobs\": [...]}), got %s", describe(v))
		return nil, newError(ErrSchema, ps.list)
	}
	doc := &Document{}
	jobsValue, isList := obj["jobs"]
	if !isList {
		var j Job
		dc.decodeValue(v, reflect.ValueOf(&j).Elem(), "")
		doc.Jobs = []Job{j}
	} else {
		doc.List = true // other keys (hooks...) are Aurora's loader's, and ignored
		switch list := jobsValue.(type) {
		case nil:
			ps.add("jobs", nullMessage)
		case []any:
			if len(list) == 0 {
				ps.add("jobs", "No job defined in this config!")
			}
			doc.Jobs = make([]Job, len(list))
			for i, item := range list {
				dc.decodeValue(item, reflect.ValueOf(&doc.Jobs[i]).Elem(), index("jobs", i))
			}
		default:
			ps.add("jobs", "expected a list of jobs, got %s", describe(jobsValue))
		}
	}
	if err := newError(ErrSchema, ps.list); err != nil {
		return nil, err
	}
	doc.warnings = dc.warnings.list
	for i := range doc.Jobs {
		prefix := doc.prefix(i)
		for path, t := range dc.templates {
			rel, ok := path, prefix == ""
			if !ok {
				rel, ok = strings.CutPrefix(path, prefix+".")
			}
			if ok {
				if doc.Jobs[i].Templates == nil {
					doc.Jobs[i].Templates = map[string]string{}
				}
				doc.Jobs[i].Templates[rel] = t
			}
		}
		doc.Jobs[i].resolveTemplates()
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

// decoder decodes generic JSON into schema values as pystachio's
// constructor and its coercions do.
type decoder struct {
	ps, warnings problems
	// templates are strings written for a non-string attribute, by path:
	// pystachio coerces them only once they are interpolated.
	templates map[string]string
}

// decodeValue decodes the generic JSON value v into rv (settable), adding a
// problem for every mismatch. It never panics on any input.
func (dc *decoder) decodeValue(v any, rv reflect.Value, path string) {
	ps := &dc.ps
	if v == nil {
		ps.add(path, nullMessage)
		return
	}
	switch rv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		before := len(ps.list)
		_, template := dc.templates[path]
		dc.decodeValue(v, nv.Elem(), path)
		if _, now := dc.templates[path]; len(ps.list) == before && template == now {
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
				dc.decodeValue(fv, rv.Field(f.index), join(path, f.name))
			}
		}
		for _, k := range sortedKeys(obj) {
			if !known[k] {
				ps.add(path, "Unknown schema attribute %s", k)
			}
		}
	case reflect.String:
		s, err := coerceString(v)
		if err != nil {
			ps.add(path, "%s", err)
			return
		}
		if _, isString := v.(string); !isString {
			dc.coerced(path, v, "String", strconv.Quote(s))
		}
		rv.SetString(s)
	case reflect.Bool, reflect.Int64, reflect.Float64:
		if s, ok := v.(string); ok && strings.Contains(s, "{{") {
			dc.templates[path] = s
			return
		}
		text, err := coerceScalar(rv.Kind(), v)
		if err != nil {
			ps.add(path, "%s", err)
			return
		}
		setScalar(rv, text)
		if !sameType(rv.Kind(), v) {
			dc.coerced(path, v, scalarTypes[rv.Kind()], text)
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			ps.add(path, "expected a list, got %s", describe(v))
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(list), len(list))
		for i, item := range list {
			dc.decodeValue(item, s.Index(i), index(path, i))
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
			dc.decodeValue(obj[k], ev, mapKey(path, k))
			if len(ps.list) == before {
				m.SetMapIndex(reflect.ValueOf(k), ev)
			}
		}
		rv.Set(m)
	default:
		panic(fmt.Sprintf("aurora: schema type %s has no decoder", rv.Type()))
	}
}

var scalarTypes = map[reflect.Kind]string{reflect.Bool: "Boolean", reflect.Int64: "Integer", reflect.Float64: "Float"}

func (dc *decoder) coerced(path string, v any, typ, to string) {
	dc.warnings.add(path, "%s coerced to %s %s, as Aurora's client does", describe(v), typ, to)
}

// sameType reports whether the JSON value v is of the attribute's own type
// (an integral number for an Integer, any number for a Float).
func sameType(k reflect.Kind, v any) bool {
	switch x := v.(type) {
	case bool:
		return k == reflect.Bool
	case json.Number:
		return k == reflect.Float64 || k == reflect.Int64 && isIntegralLiteral(string(x))
	}
	return false
}

// isIntegralLiteral: Python's json reads a number without '.', 'e' or 'E'
// as an int, any other as a float.
func isIntegralLiteral(n string) bool { return !strings.ContainsAny(n, ".eE") }

// setScalar sets rv from text, the canonical form coerceScalar returned.
func setScalar(rv reflect.Value, text string) {
	switch rv.Kind() {
	case reflect.Bool:
		rv.SetBool(text == "True")
	case reflect.Int64:
		i, _ := strconv.ParseInt(text, 10, 64)
		rv.SetInt(i)
	case reflect.Float64:
		f, _ := strconv.ParseFloat(text, 64)
		rv.SetFloat(f)
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

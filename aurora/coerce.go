package aurora

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"unicode"

	"github.com/nix-aurora/nix-aurora/mustache"
)

// pystachio 0.8.5 keeps a scalar as written and coerces it when it is
// interpolated (pystachio/basic.py): an Integer is Python's int() of a
// number, a boolean or a string (2.7 → 2, True → 1, "3" → 3, "2.7" fails);
// a Float is float() of the same; a Boolean is the boolean, bool() of a
// number, or a string "true"/"1"/"false"/"0" in any case; a String is
// unicode() of a string, number or boolean. The client runs on Python 2.7.

// coerceString is pystachio's String.coerce of a JSON value.
func coerceString(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return pyBool(x), nil
	case json.Number:
		if isIntegralLiteral(string(x)) {
			return strings.TrimPrefix(string(x), "+"), nil // Python prints an int as written
		}
		f, err := strconv.ParseFloat(string(x), 64)
		if err != nil || math.IsInf(f, 0) {
			return "", fmt.Errorf("expected a string, got %s (out of range)", x)
		}
		return mustache.FormatFloat(f), nil
	}
	return "", fmt.Errorf("expected a string, got %s", describe(v))
}

// coerceScalar coerces a JSON value (not a template) for an attribute of
// kind k, returning Python's str() of the result ("True", "3", "0.5").
func coerceScalar(k reflect.Kind, v any) (string, error) {
	what := map[reflect.Kind]string{reflect.Bool: "a boolean (true or false)", reflect.Int64: "an integer", reflect.Float64: "a number"}[k]
	switch x := v.(type) {
	case bool:
		switch k {
		case reflect.Bool:
			return pyBool(x), nil
		case reflect.Int64:
			return map[bool]string{true: "1", false: "0"}[x], nil
		default:
			return map[bool]string{true: "1.0", false: "0.0"}[x], nil
		}
	case json.Number:
		switch k {
		case reflect.Bool:
			f, _, err := big.ParseFloat(string(x), 10, 64, big.ToZero)
			if err != nil {
				return "", fmt.Errorf("expected %s, got %s", what, describe(v))
			}
			return pyBool(f.Sign() != 0), nil
		case reflect.Int64:
			i, err := truncateInteger(x)
			if err != nil {
				return "", fmt.Errorf("expected an integer, got %w", err)
			}
			return strconv.FormatInt(i, 10), nil
		default:
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil || math.IsInf(f, 0) {
				return "", fmt.Errorf("expected a number, got %s (out of range)", x)
			}
			return strconv.FormatFloat(f, 'g', -1, 64), nil
		}
	case string:
		text, err := coerceText(k, x)
		if err != nil {
			return "", fmt.Errorf("expected %s, got %s: %w", what, describe(v), err)
		}
		return text, nil
	}
	return "", fmt.Errorf("expected %s, got %s", what, describe(v))
}

// truncateInteger is Python's int() of a JSON number: an integral literal
// exactly, a float truncated toward zero; it must fit an int64.
func truncateInteger(n json.Number) (int64, error) {
	if isIntegralLiteral(string(n)) {
		return parseInteger(n)
	}
	f, err := strconv.ParseFloat(string(n), 64) // Python's json reads a float
	if err != nil || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%s (out of range for a 64-bit integer)", n)
	}
	t := math.Trunc(f)
	if t < -(1<<63) || t >= 1<<63 {
		return 0, fmt.Errorf("%s (out of range for a 64-bit integer)", n)
	}
	return int64(t), nil
}

// coerceText coerces a string (after interpolation) for an attribute of
// kind k, as pystachio does, returning the canonical form of the value.
// The error is pystachio's CoercionError text.
func coerceText(k reflect.Kind, s string) (string, error) {
	fail := fmt.Errorf("Cannot coerce '%s' to %s", s, scalarTypes[k])
	switch k {
	case reflect.Bool:
		switch strings.ToLower(s) {
		case "true", "1":
			return "True", nil
		case "false", "0":
			return "False", nil
		}
		return "", fail
	case reflect.Int64:
		digits, ok := pyIntText(s)
		if !ok {
			return "", fail
		}
		i, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return "", fmt.Errorf("%s: out of range for a 64-bit integer", fail)
		}
		return strconv.FormatInt(i, 10), nil
	default:
		t := asciiDigits(strings.TrimFunc(s, unicode.IsSpace))
		// Python's float() reads neither hexadecimal nor underscores; nan
		// and inf are refused here (no attribute of Aurora's can hold them).
		if strings.ContainsAny(t, "xX_") || t == "" {
			return "", fail
		}
		f, err := strconv.ParseFloat(t, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return "", fail
		}
		return strconv.FormatFloat(f, 'g', -1, 64), nil
	}
}

// pyIntText is Python's int() of a string: surrounding whitespace, an
// optional sign, and decimal digits of any script. It returns the number in
// ASCII.
func pyIntText(s string) (string, bool) {
	t := strings.TrimFunc(s, unicode.IsSpace)
	sign := ""
	if t != "" && (t[0] == '+' || t[0] == '-') {
		if t[0] == '-' {
			sign = "-"
		}
		t = t[1:]
	}
	if t == "" {
		return "", false
	}
	for _, r := range t {
		if !unicode.IsDigit(r) {
			return "", false
		}
	}
	return sign + asciiDigits(t), true
}

// asciiDigits replaces decimal digits of any script by ASCII ones, as
// Python does before it parses a number.
func asciiDigits(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 || !unicode.IsDigit(r) {
			return r
		}
		// Unicode's decimal digits come in runs of ten from zero.
		zero := r
		for unicode.IsDigit(zero - 1) {
			zero--
		}
		return '0' + (r-zero)%10
	}, s)
}

// isPyInt reports whether Python's int(s) accepts s.
func isPyInt(s string) bool {
	_, ok := pyIntText(s)
	return ok
}

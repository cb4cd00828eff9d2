package bindings

import (
	"reflect"
	"testing"
)

func TestParseSections(t *testing.T) {
	const sep = "NIX_AURORA_0123456789abcdef"
	hostile := "a b 'c' \"d\" $HOME `id` \\n\nsecond line\n"
	data := "8080\n" + sep + "\n" + hostile + "\n" + sep + "\n" + "\n" + sep + "\n"
	got, err := ParseSections(data, sep, []string{"thermos.ports[http]", "mesos.hostname", "empty"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"thermos.ports[http]": "8080", "mesos.hostname": hostile, "empty": ""}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q\nwant %q", got, want)
	}
	for _, bad := range []string{"8080\n", "8080\n" + sep + "\nextra\n", ""} {
		if _, err := ParseSections(bad, sep, []string{"a"}); err == nil {
			t.Errorf("ParseSections(%q) succeeded", bad)
		}
	}
}

func TestExpand(t *testing.T) {
	vals := map[string]string{"thermos.ports[http]": "80", "x": "{{x}}"}
	got, err := Expand("port {{thermos.ports[http]}} again {{thermos.ports[http]}} {{x}} {{other}} {{", vals, false)
	if err != nil || got != "port 80 again 80 {{x}} {{other}} {{" {
		t.Fatalf("Expand = %q, %v", got, err)
	}
	if _, err := Expand("{{other}}", vals, true); err == nil {
		t.Fatal("strict Expand accepted an unbound name")
	}
}

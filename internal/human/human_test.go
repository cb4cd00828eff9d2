package human

import "testing"

func TestBytes(t *testing.T) {
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCount(t *testing.T) {
	for _, c := range []struct {
		n            int64
		noun, plural string
		want         string
	}{
		{0, "root", "", "0 roots"},
		{1, "root", "", "1 root"},
		{2, "root", "", "2 roots"},
		{1, "retry", "retries", "1 retry"},
		{3, "retry", "retries", "3 retries"},
	} {
		if got := Count(c.n, c.noun, c.plural); got != c.want {
			t.Errorf("Count(%d, %q, %q) = %q, want %q", c.n, c.noun, c.plural, got, c.want)
		}
	}
}

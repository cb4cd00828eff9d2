// Package human formats quantities for log lines people read.
package human

import "fmt"

// Bytes formats n with binary units: 512 B, 1.5 KiB, 3.2 MiB.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Count is n with the noun in the number that goes with it: "1 root",
// "2 roots". plural is the noun's plural ("" adds an s).
func Count(n int64, noun, plural string) string {
	if n == 1 {
		return "1 " + noun
	}
	if plural == "" {
		plural = noun + "s"
	}
	return fmt.Sprintf("%d %s", n, plural)
}

package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// logger writes the lines Thermos shows as the process's stderr: one line
// per event, each with a UTC timestamp, so that a log read later tells when
// a fetch happened and how long the init took.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func timestamp() string { return time.Now().UTC().Format("2006-01-02T15:04:05.000Z") }

func (l *logger) printf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(msg, "\n") {
		fmt.Fprintf(l.w, "%s nix-init: %s\n", timestamp(), line)
	}
}

package realise

import (
	"errors"
	"time"
)

// Report is what one run did, for `nix-init --report FILE` (JSON) and for
// the summary line.
type Report struct {
	Outcome       string       `json:"outcome"` // "ok", "failed" or "gave-up"
	Error         string       `json:"error,omitempty"`
	Store         string       `json:"store,omitempty"`
	DaemonVersion string       `json:"daemon_version,omitempty"`
	Roots         []RootReport `json:"roots"`
	Substituted   []PathReport `json:"substituted"`
	DownloadBytes uint64       `json:"download_bytes"`
	Retries       int          `json:"retries"`
	Started       time.Time    `json:"started"`
	Seconds       float64      `json:"seconds"`
	// PeakRSSKiB is the process's own peak memory, filled by the caller.
	PeakRSSKiB int64 `json:"peak_rss_kib,omitempty"`

	progress int // what attempts fetched or learned (see Session.Progressed)
}

// RootReport is one root: where its link is and whether it needed fetching.
type RootReport struct {
	Name     string `json:"name"`
	Path     string `json:"path"`
	Link     string `json:"link,omitempty"`
	WasValid bool   `json:"was_valid"`
}

// PathReport is one substituted store path.
type PathReport struct {
	Path    string  `json:"path"`
	From    string  `json:"from,omitempty"`
	Bytes   uint64  `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

func (r *Report) finish(err error) {
	r.Seconds = time.Since(r.Started).Seconds()
	switch {
	case err == nil:
		r.Outcome = "ok"
	case errors.Is(err, ErrGaveUp):
		r.Outcome = "gave-up"
	default:
		r.Outcome = "failed"
	}
	if err != nil {
		r.Error = err.Error()
	}
	if r.Substituted == nil {
		r.Substituted = []PathReport{}
	}
}

package store

import (
	"context"
	"maps"
	"slices"
)

// Options are the client settings SetOptions sends. Untrusted clients may
// set only a few overrides (e.g. "substituters" within the daemon's trusted
// ones, "connect-timeout"); the daemon silently ignores the rest.
//
// The zero Options turns substitution off: start from DefaultOptions.
type Options struct {
	KeepFailed     bool
	KeepGoing      bool
	TryFallback    bool // build from source when substitution fails
	Verbosity      Verbosity
	MaxBuildJobs   uint64 // in Nix 2.8 this also bounds parallel substitutions
	MaxSilentTime  uint64 // seconds; 0 = no limit
	VerboseBuild   bool
	BuildCores     uint64 // 0 = all
	UseSubstitutes bool
	// Overrides are nix.conf settings by name: "substituters",
	// "trusted-public-keys", "connect-timeout",
	// "narinfo-cache-negative-ttl", ... Sent sorted by name.
	Overrides map[string]string
}

// DefaultOptions are the settings a plain Nix client sends by default.
func DefaultOptions() Options {
	return Options{
		Verbosity:      LvlError,
		MaxBuildJobs:   1,
		UseSubstitutes: true,
	}
}

// SetOptions sets the connection's client settings.
func (c *Conn) SetOptions(ctx context.Context, o Options) error {
	names := make([]string, 0, len(o.Overrides))
	for k := range o.Overrides {
		names = append(names, k)
	}
	slices.Sort(names)
	sent := o
	sent.Overrides = maps.Clone(o.Overrides)
	defer func() {
		c.mu.Lock()
		c.options = &sent
		c.mu.Unlock()
	}()
	return c.call(ctx, "SetOptions", "", func() error {
		return c.request(opSetOptions, func(e *encoder) {
			e.bool(o.KeepFailed)
			e.bool(o.KeepGoing)
			e.bool(o.TryFallback)
			e.u64(uint64(o.Verbosity))
			e.u64(o.MaxBuildJobs)
			e.u64(o.MaxSilentTime)
			e.u64(1) // obsolete useBuildHook
			if o.VerboseBuild {
				e.u64(uint64(LvlError)) // the daemon reads "verbose" as "error level"
			} else {
				e.u64(uint64(LvlVomit))
			}
			e.u64(0) // obsolete logType
			e.u64(0) // obsolete printBuildTrace
			e.u64(o.BuildCores)
			e.bool(o.UseSubstitutes)
			e.u64(uint64(len(names))) // ≥ 1.12
			for _, k := range names {
				e.str(k)
				e.str(o.Overrides[k])
			}
		})
	})
}

// Options returns the settings last sent with SetOptions (so that a caller
// can send them again with one changed), and false if none were.
func (c *Conn) Options() (Options, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.options == nil {
		return Options{}, false
	}
	o := *c.options
	o.Overrides = maps.Clone(o.Overrides)
	return o, true
}

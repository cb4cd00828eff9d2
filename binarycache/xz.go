package binarycache

import (
	"io"
	"runtime"
)

// xz is what `nix copy` and Hydra write by default, and the one format
// where the decoder sets nix-init's speed: a pure-Go decoder reads about
// 28 MB/s here, liblzma (what Nix uses) about 60. Builds with cgo
// (the shipped static nix-init) decode with liblzma (xz_liblzma.go); a
// CGO_ENABLED=0 build falls back to ulikunitz/xz (xz_purego.go).
//
// Like zstd's, xz decoders are few: each holds the stream's dictionary (up
// to 8 MiB for `nix copy`'s default preset) for as long as it decodes,
// outside Go's heap under liblzma, and decoding is CPU work, so more
// decoders than cores only add memory (one on two cores made a cold
// start 1.5x slower).
var (
	xzSlots       = make(chan struct{}, maxXZDecoders)
	maxXZDecoders = min(max(runtime.NumCPU(), 1), 4)
)

// xzMemLimit bounds the memory one xz stream may ask of the decoder (its
// dictionary, chosen by whoever compressed it): xz's highest preset needs
// 65 MiB; a stream that needs more than this fails instead of taking the
// node's memory.
const xzMemLimit = 256 << 20

// takeXZ waits for the first compressed bytes (firstBytes), then for a
// decoder slot.
func (d *decompressor) takeXZ() (io.Reader, error) {
	br, err := d.firstBytes()
	if err != nil {
		return nil, err
	}
	xzSlots <- struct{}{}
	r, err := newXZReader(br)
	if err != nil {
		<-xzSlots
		return nil, err
	}
	d.xz = r
	return r, nil
}

// closeXZ gives the decoder and its slot back.
func (d *decompressor) closeXZ() {
	if d.xz == nil {
		return
	}
	d.xz.Close()
	d.xz = nil
	<-xzSlots
}

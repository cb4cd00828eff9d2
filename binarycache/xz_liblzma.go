//go:build cgo

package binarycache

/*
#cgo LDFLAGS: -llzma
#include <lzma.h>
#include <malloc.h>
#include <stdlib.h>

// Dictionaries (8 MiB for nix copy's xz) are mapped for each stream and
// unmapped when it ends, so that a decoder holds only the pages it wrote,
// and only while it decodes. Without a fixed threshold glibc raises it
// after the first free, and later dictionaries stay in its heap.
static void nxa_setup(void) {
	mallopt(M_MMAP_THRESHOLD, 256 << 10);
}

// nxa_code runs one lzma_code step on buffers the caller owns, and leaves
// no pointer to them in the stream once it returns (cgo forbids C keeping
// Go pointers).
static lzma_ret nxa_code(lzma_stream *s, const uint8_t *in, size_t in_len, size_t *in_used,
		uint8_t *out, size_t out_len, size_t *out_used, int finish) {
	s->next_in = in;
	s->avail_in = in_len;
	s->next_out = out;
	s->avail_out = out_len;
	lzma_ret r = lzma_code(s, finish ? LZMA_FINISH : LZMA_RUN);
	*in_used = in_len - s->avail_in;
	*out_used = out_len - s->avail_out;
	s->next_in = NULL;
	s->avail_in = 0;
	s->next_out = NULL;
	s->avail_out = 0;
	return r;
}

static lzma_stream *nxa_new(void) {
	return calloc(1, sizeof(lzma_stream)); // LZMA_STREAM_INIT is all zeros
}

static lzma_ret nxa_init(lzma_stream *s, uint64_t memlimit) {
	return lzma_stream_decoder(s, memlimit, LZMA_CONCATENATED);
}

static void nxa_free(lzma_stream *s) {
	lzma_end(s);
	free(s);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"io"
	"unsafe"
)

// XZDecoder names the xz decoder this build uses.
var XZDecoder = "liblzma " + C.GoString(C.lzma_version_string())

// xzDecoder decodes xz (concatenated streams, as xz and Nix read them)
// with liblzma; see xz.go.
type xzDecoder struct {
	src  io.Reader
	s    *C.lzma_stream
	in   []byte
	off  int // in[off:] is not yet decoded
	eof  bool
	done bool
	err  error
}

func init() { C.nxa_setup() }

// newXZReader starts a decoder. Decoders are not reused: one that kept
// its dictionary would keep every page of it resident (a new one costs
// the kernel zeroing what the stream writes, well under a millisecond
// for 8 MiB).
func newXZReader(r io.Reader) (*xzDecoder, error) {
	s := C.nxa_new()
	if s == nil {
		return nil, errors.New("xz: out of memory")
	}
	if ret := C.nxa_init(s, xzMemLimit); ret != C.LZMA_OK {
		C.nxa_free(s)
		return nil, lzmaError(ret)
	}
	return &xzDecoder{src: r, s: s, in: make([]byte, 0, 64<<10)}, nil
}

func (d *xzDecoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if d.off == len(d.in) && !d.eof {
			n, err := io.ReadAtLeast(d.src, d.in[:cap(d.in)], 1)
			d.in, d.off = d.in[:n], 0
			if err == io.EOF || err == io.ErrUnexpectedEOF {
				d.eof = true
			} else if err != nil {
				d.err = err
				return 0, err
			}
		}
		var inUsed, outUsed C.size_t
		var in *C.uint8_t
		if d.off < len(d.in) {
			in = (*C.uint8_t)(unsafe.Pointer(&d.in[d.off]))
		}
		finish := C.int(0)
		if d.eof {
			finish = 1
		}
		ret := C.nxa_code(d.s, in, C.size_t(len(d.in)-d.off), &inUsed,
			(*C.uint8_t)(unsafe.Pointer(&p[0])), C.size_t(len(p)), &outUsed, finish)
		d.off += int(inUsed)
		n := int(outUsed)
		switch ret {
		case C.LZMA_OK:
			if n > 0 {
				return n, nil
			}
			if inUsed == 0 && d.eof {
				// No input left, nothing produced, and not at the end.
				d.err = io.ErrUnexpectedEOF
				return 0, d.err
			}
		case C.LZMA_STREAM_END:
			d.done = true
			if n > 0 {
				return n, nil
			}
			return 0, io.EOF
		case C.LZMA_BUF_ERROR:
			d.err = io.ErrUnexpectedEOF
			return n, d.err
		default:
			d.err = lzmaError(ret)
			return n, d.err
		}
	}
}

// Close frees the decoder and its dictionary.
func (d *xzDecoder) Close() error {
	if d.s != nil {
		C.nxa_free(d.s)
		d.s = nil
	}
	return nil
}

func lzmaError(ret C.lzma_ret) error {
	switch ret {
	case C.LZMA_MEM_ERROR:
		return errors.New("xz: out of memory")
	case C.LZMA_MEMLIMIT_ERROR:
		return fmt.Errorf("xz: the stream needs more than %d MiB to decode", xzMemLimit>>20)
	case C.LZMA_FORMAT_ERROR:
		return errors.New("xz: not an xz stream")
	case C.LZMA_OPTIONS_ERROR:
		return errors.New("xz: unsupported options in the stream header")
	case C.LZMA_DATA_ERROR:
		return errors.New("xz: corrupt data")
	case C.LZMA_PROG_ERROR:
		return errors.New("xz: decoder misused (a bug)")
	}
	return fmt.Errorf("xz: liblzma error %d", int(ret))
}

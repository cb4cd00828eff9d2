//go:build !cgo

package binarycache

import (
	"io"

	"github.com/ulikunitz/xz"
)

// xzDecoder is ulikunitz/xz in builds without cgo; see xz.go.
type xzDecoder struct{ *xz.Reader }

// XZDecoder names the xz decoder this build uses.
const XZDecoder = "ulikunitz/xz (pure Go)"

func newXZReader(r io.Reader) (*xzDecoder, error) {
	xr, err := xz.NewReader(r)
	if err != nil {
		return nil, err
	}
	return &xzDecoder{xr}, nil
}

func (d *xzDecoder) Close() error { return nil }

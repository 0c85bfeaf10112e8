//go:build !linux

package simclient

import (
	"errors"
	"strings"
	"testing"
)

func TestNeedsLinux(t *testing.T) {
	// vchan.SimHost passes this error on; its tests look for the daemon's name.
	if _, err := Connect(t.TempDir(), 1); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "vchan-simd") {
		t.Errorf("Connect = %v, want an error wrapping errors.ErrUnsupported that names vchan-simd", err)
	}
	var d Domain
	if _, err := d.Sharer().Share(0, 1, nil); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Share on a zero Domain = %v, want errors.ErrUnsupported", err)
	}
}

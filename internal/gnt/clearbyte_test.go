package gnt

import (
	"bytes"
	"testing"
	"unsafe"
)

func TestClearByte(t *testing.T) {
	for off := range 8 {
		var words [2]uint32 // aligned backing store
		b := unsafePointer(&words)
		copy(b[:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
		ClearByte(&b[off])
		want := []byte{1, 2, 3, 4, 5, 6, 7, 8}
		want[off] = 0
		if !bytes.Equal(b[:], want) {
			t.Errorf("ClearByte at %d: % x, want % x", off, b[:], want)
		}
	}
}

func unsafePointer(w *[2]uint32) *[8]byte { return (*[8]byte)(unsafe.Pointer(w)) }

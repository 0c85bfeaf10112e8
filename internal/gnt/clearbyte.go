package gnt

import (
	"encoding/binary"
	"sync/atomic"
	"unsafe"
)

var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// ClearByte sets the byte at b to 0, as the kernel does for an unmap
// notification's CLEAR_BYTE: the simulators use it. The kernel does a plain
// byte store; Go has no atomic byte operations, so this is an atomic AND on
// the byte's aligned 32-bit word, which leaves the neighbouring bytes intact
// even if a peer updates them at the same moment (in the vchan page: the
// other live byte and the notify bits).
func ClearByte(b *byte) {
	p := unsafe.Pointer(b)
	lane := uintptr(p) & 3
	shift := uint(lane) * 8
	if !littleEndian {
		shift = uint(3-lane) * 8
	}
	atomic.AndUint32((*uint32)(unsafe.Add(p, -int(lane))), ^(uint32(0xff) << shift))
}

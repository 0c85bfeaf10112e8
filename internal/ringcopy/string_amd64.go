//go:build amd64 && !race

package ringcopy

// copyLarge copies src to dst, of the same length: whole quadwords with the
// string move, the tail of under 8 bytes with copy.
func copyLarge(dst, src []byte) int {
	q := len(src) &^ 7
	moveQuads(&dst[0], &src[0], uintptr(q/8))
	copy(dst[q:], src[q:])
	return len(src)
}

// moveQuads copies quads 8-byte words from src to dst with REP MOVSQ
// (string_amd64.s).
//
//go:noescape
func moveQuads(dst, src *byte, quads uintptr)

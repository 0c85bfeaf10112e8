//go:build amd64 && !race

package ringcopy

const haveString = true

// moveQuads copies quads 8-byte words from src to dst with REP MOVSQ
// (string_amd64.s).
//
//go:noescape
func moveQuads(dst, src *byte, quads uintptr)

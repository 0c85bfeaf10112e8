//go:build !amd64 || race

package ringcopy

const haveString = false

func moveQuads(dst, src *byte, quads uintptr) { panic("ringcopy: no string move here") }

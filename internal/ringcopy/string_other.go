//go:build !amd64 || race

package ringcopy

const haveString = false

func moveString(dst, src *byte, n uintptr) { panic("ringcopy: no string move here") }

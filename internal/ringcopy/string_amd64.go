//go:build amd64 && !race

package ringcopy

const haveString = true

// moveString copies n bytes from src to dst with REP MOVSB (string_amd64.s).
//
//go:noescape
func moveString(dst, src *byte, n uintptr)

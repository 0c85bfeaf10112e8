//go:build !amd64 || race

package ringcopy

// copyLarge is the built-in copy where there is no string move to use.
func copyLarge(dst, src []byte) int { return copy(dst, src) }

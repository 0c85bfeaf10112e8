//go:build !race

package vchan

// raceEnabled reports a build with the race detector: tests that move a lot
// of data or run many cycles scale themselves down.
const raceEnabled = false

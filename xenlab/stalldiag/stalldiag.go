// Package stalldiag describes, for a lab program whose connection stalled,
// what the kernel holds for it: whether each of the process's event-channel
// handles has an event waiting to be read. One look is a snapshot: an event
// waiting under a sleeping reader may be a wake-up still on its way (that is
// what the 4.20 reports turned out to show, docs/XEN-4.20.md); only the same
// state seen again later points at a lost one.
package stalldiag

import (
	"fmt"
	"runtime"
)

// Dump returns EventChannels and every goroutine's stack, for a program to
// print when it sees a stall.
func Dump() string {
	buf := make([]byte, 1<<20)
	return fmt.Sprintf("event channels: %s; goroutines:\n%s", EventChannels(), buf[:runtime.Stack(buf, true)])
}

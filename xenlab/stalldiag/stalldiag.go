// Package stalldiag describes, for a lab program whose connection stalled,
// what the kernel holds for it: whether each of the process's event-channel
// handles has an event waiting to be read. A handle with an event waiting
// under a reader that sleeps means the wake-up was lost in this process; a
// handle with none means the event never reached this domain's device
// (docs/XEN-4.20.md).
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

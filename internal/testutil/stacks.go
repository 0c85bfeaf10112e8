package testutil

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

// GoroutinesWith returns the stacks of the goroutines whose stack holds
// every one of frames.
func GoroutinesWith(frames ...string) []string {
	buf := make([]byte, 1<<22)
	var found []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		all := true
		for _, f := range frames {
			all = all && strings.Contains(g, f)
		}
		if all {
			found = append(found, g)
		}
	}
	return found
}

// WaitForStack waits until some goroutine's stack holds every one of frames.
func WaitForStack(tb testing.TB, frames ...string) {
	tb.Helper()
	for start := time.Now(); len(GoroutinesWith(frames...)) == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > time.Minute {
			tb.Fatalf("no goroutine reached %v in a minute", frames)
		}
	}
}

// Package pollcheck lets tests see what the runtime poller watches: the
// epoll instances of the process and their descriptors, from /proc/self.
package pollcheck

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Watches maps each of the process's epoll instances to the
// descriptors it watches, from /proc/self/fdinfo.
func Watches(tb testing.TB) map[int][]int {
	tb.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		tb.Fatal(err)
	}
	watches := map[int][]int{}
	for _, e := range fds {
		if link, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || link != "anon_inode:[eventpoll]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		ep, _ := strconv.Atoi(e.Name())
		watches[ep] = []int{}
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "tfd:" {
				if fd, err := strconv.Atoi(f[1]); err == nil {
					watches[ep] = append(watches[ep], fd)
				}
			}
		}
	}
	return watches
}

// CheckGates checks that what the runtime poller's epoll instances (those in
// before, from Watches) watch beyond before are want gates
// (internal/blockwait.Gate, epoll instances of their own) and, in a process
// with more than one P, that the gates watch nothing: no wait is in the
// poller.
func CheckGates(tb testing.TB, when string, before map[int][]int, want int) {
	tb.Helper()
	after := Watches(tb)
	gates := 0
	for ep, fds := range after {
		if _, runtimes := before[ep]; !runtimes {
			continue // a gate
		}
		for _, fd := range fds {
			if slices.Contains(before[ep], fd) {
				continue
			}
			watched, isGate := after[fd]
			switch {
			case !isGate:
				tb.Errorf("%s: the runtime poller watches descriptor %d, not a gate", when, fd)
			case len(watched) > 0 && runtime.GOMAXPROCS(0) > 1:
				tb.Errorf("%s: a gate watches %v with no wait in the poller", when, watched)
			}
			gates++
		}
	}
	if gates != want {
		tb.Errorf("%s: %d gates in the runtime poller, want %d", when, gates, want)
	}
}

//go:build !linux

package vchan

import "errors"

var errNoSuchProcess = errors.New("no such process")

// processStart is unknown off Linux: a record of another process is then
// taken as live, and only this process's own Listeners are told apart.
func processStart(pid int) (uint64, error) {
	return 0, errors.New("process start times need Linux's /proc")
}

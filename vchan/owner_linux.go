package vchan

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

var errNoSuchProcess = errors.New("no such process")

// processStart returns the start time of process pid (field 22 of
// /proc/<pid>/stat, in clock ticks since boot): with the pid it names one
// process, even after the pid is reused.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if errors.Is(err, os.ErrNotExist) {
		return 0, errNoSuchProcess
	}
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, errors.New("short /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after ')'
}

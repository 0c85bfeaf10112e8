package vchan

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// A Listener records who owns its xenstore directory in the key "owner",
// readable by its own domain only: "<pid> <process start time> <listener
// number>". Xenstore cannot tie a node to a connection, so this is how a
// second Listen on the same path tells a live server (refused with
// EADDRINUSE) from a directory left by one that died (taken over): both
// run in the same domain, so in the same kernel, whose /proc answers.
// Clients never read the key; libxenvchan ignores it.
const ownerKey = "owner"

var (
	listenerSeq  atomic.Uint64
	liveMu       sync.Mutex
	liveListener = map[uint64]bool{} // this process's open Listeners
)

// ownerRecord returns the record of a new Listener of this process, and
// marks that Listener live until forgetOwner.
func ownerRecord() (record string, seq uint64) {
	seq = listenerSeq.Add(1)
	liveMu.Lock()
	liveListener[seq] = true
	liveMu.Unlock()
	start, _ := processStart(os.Getpid())
	return fmt.Sprintf("%d %d %d", os.Getpid(), start, seq), seq
}

func forgetOwner(seq uint64) {
	liveMu.Lock()
	delete(liveListener, seq)
	liveMu.Unlock()
}

// ownerAlive reports whether the Listener that wrote record is still open.
// A record it cannot parse is taken as dead: only this package writes it,
// in the Listener's own domain.
func ownerAlive(record []byte) bool {
	f := strings.Fields(string(record))
	if len(f) != 3 {
		return false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	seq, err3 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || pid <= 0 {
		return false
	}
	got, err := processStart(pid)
	if pid == os.Getpid() && got == start {
		liveMu.Lock()
		defer liveMu.Unlock()
		return liveListener[seq]
	}
	if err != nil {
		return err != errNoSuchProcess // unknown: assume it lives
	}
	return got == start
}

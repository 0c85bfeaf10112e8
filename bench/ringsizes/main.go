//go:build linux

// Command ringsizes measures what a drop-in user gets from each ring size:
// two processes on the cross-process simulator (vchan-simd) move a stream
// with random write and read sizes (1 B to 64 KiB each, as an application
// that is not tuned for vchan does), against the same program over a unix
// socket pair. It prints, per ring size, the median throughput, the ratio to
// the unix socket pair of the same round, the CPU time both peers used per
// MiB, and the grant cost (pages per ring pair, and how many pairs fit in
// gntalloc's default limit of 1024 pages: the connections and a Listener's
// spare ring).
// Rounds interleave the sizes, so that load from other jobs hits them alike.
//
//	go run ./bench/ringsizes -rounds 5 -mib 256
//
// It is how the default ring size of a nil vchan.Config was chosen
// (docs/PERFORMANCE.md).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/simd/simproto"
	"github.com/vchan-go/vchan/vchan"
)

const maxIO = 64 << 10

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-peer" {
		if err := peer(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "ringsizes peer:", err)
			os.Exit(1)
		}
		return
	}
	rounds := flag.Int("rounds", 5, "measured rounds")
	mib := flag.Int("mib", 256, "MiB per transfer")
	sizes := flag.String("sizes", "1,4096,16384,65536,262144,1048576", "server ring sizes in bytes (1: libxenvchan's in-page 1 KiB/2 KiB)")
	flag.Parse()
	if err := drive(*rounds, *mib, *sizes); err != nil {
		fmt.Fprintln(os.Stderr, "ringsizes:", err)
		os.Exit(1)
	}
}

// peer is one end: "send N" writes N bytes in random sizes, "recv N" reads
// them in random sizes; it prints its CPU time in nanoseconds when done.
func peer(args []string) error {
	role, n := args[0], mustInt(args[1])
	var c io.ReadWriteCloser
	if args[2] == "unix" {
		c = os.NewFile(3, "unix")
	} else {
		dom, _ := strconv.Atoi(args[3])
		peerDom, _ := strconv.Atoi(args[4])
		ring := mustInt(args[5])
		h, err := vchan.SimHost(args[2], uint16(dom))
		if err != nil {
			return err
		}
		defer h.Close()
		if role == "recv" {
			ln, err := vchan.Listen(uint16(peerDom), "rs", &vchan.Config{Host: h, ReadBufferSize: int(ring), WriteBufferSize: int(ring)})
			if err != nil {
				return err
			}
			fmt.Println("listening")
			conn, err := ln.Accept()
			ln.Close()
			if err != nil {
				return err
			}
			c = conn
		} else {
			conn, err := vchan.Dial(uint16(peerDom), "rs", &vchan.Config{Host: h, WaitForServer: true})
			if err != nil {
				return err
			}
			c = conn
		}
	}
	buf := make([]byte, maxIO)
	rng := rand.New(rand.NewPCG(1, 2))
	for n > 0 {
		k := min(int64(1+rng.IntN(maxIO)), n)
		var err error
		var m int
		if role == "send" {
			m, err = c.Write(buf[:k])
		} else {
			m, err = c.Read(buf[:k])
		}
		n -= int64(m)
		if err != nil {
			return err
		}
	}
	if fc, ok := c.(interface{ Flush() error }); ok && role == "send" {
		if err := fc.Flush(); err != nil {
			return err
		}
	}
	c.Close()
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Println(time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Nanoseconds())
	return nil
}

func mustInt(s string) int64 {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		panic(err)
	}
	return n
}

type sample struct{ mbps, cpuPerMiB float64 }

func drive(rounds, mib int, sizeList string) error {
	var sizes []int
	for _, s := range strings.Split(sizeList, ",") {
		sizes = append(sizes, int(mustInt(s)))
	}
	dir, err := os.MkdirTemp("/tmp", "rs")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := simdaemon.Start(simdaemon.Config{Dir: dir})
	if err != nil {
		return err
	}
	defer d.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	n := int64(mib) << 20
	results := map[int][]sample{}
	var unixRes []sample
	for r := 0; r <= rounds; r++ {
		order := slices.Clone(sizes)
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, size := range append(order, -1) {
			var s sample
			if size < 0 {
				s, err = runUnix(self, n)
			} else {
				s, err = runVchan(self, dir, size, n)
			}
			if err != nil {
				return fmt.Errorf("ring %d: %w", size, err)
			}
			if r == 0 {
				continue // warm-up
			}
			if size < 0 {
				unixRes = append(unixRes, s)
			} else {
				results[size] = append(results[size], s)
			}
		}
	}
	out, _ := exec.Command("lscpu").Output()
	cpu := ""
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "Model name:") {
			cpu = strings.TrimSpace(strings.TrimPrefix(l, "Model name:"))
		}
	}
	fmt.Printf("date %s, %s, %d rounds of %d MiB, random write and read sizes 1..%d B (medians)\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), cpu, rounds, mib, maxIO)
	u := median(unixRes)
	fmt.Println("| ring (server's minimum, both ways) | MB/s | vs unix socket pair | CPU ms per MiB (both peers) | pages per ring pair | ring pairs in 1024 pages (a Listener holds one spare) |")
	fmt.Println("|---|---|---|---|---|---|")
	for _, size := range sizes {
		m := median(results[size])
		pages := 1
		if size > 2048 {
			pages += 2 * ringPages(size)
		}
		fmt.Printf("| %s | %.0f | %.2f | %.2f | %d | %d |\n", label(size), m.mbps, m.mbps/u.mbps, m.cpuPerMiB, pages, 1024/pages)
	}
	fmt.Printf("| unix socket pair | %.0f | 1.00 | %.2f | | |\n", u.mbps, u.cpuPerMiB)
	return nil
}

func ringPages(size int) int {
	p := 1
	for p*4096 < size {
		p *= 2
	}
	return p
}

func label(size int) string {
	switch {
	case size <= 2048:
		return "1 KiB / 2 KiB in the shared page (libxenvchan's smallest)"
	case size >= 1<<20:
		return fmt.Sprintf("%d MiB", size>>20)
	default:
		return fmt.Sprintf("%d KiB", size>>10)
	}
}

func median(s []sample) sample {
	m := slices.Clone(s)
	slices.SortFunc(m, func(a, b sample) int { return int(a.mbps - b.mbps) })
	c := slices.Clone(s)
	slices.SortFunc(c, func(a, b sample) int { return int(1000 * (a.cpuPerMiB - b.cpuPerMiB)) })
	return sample{m[len(m)/2].mbps, c[len(c)/2].cpuPerMiB}
}

func runVchan(self, dir string, size int, n int64) (sample, error) {
	env := append(os.Environ(), simproto.DirEnv+"="+dir)
	recv := exec.Command(self, "-peer", "recv", strconv.FormatInt(n, 10), dir, "0", "1", strconv.Itoa(size))
	send := exec.Command(self, "-peer", "send", strconv.FormatInt(n, 10), dir, "1", "0", strconv.Itoa(size))
	recv.Env, send.Env = env, env
	return runPair(recv, send, true)
}

func runUnix(self string, n int64) (sample, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return sample{}, err
	}
	a, b := os.NewFile(uintptr(fds[0]), "a"), os.NewFile(uintptr(fds[1]), "b")
	defer a.Close()
	defer b.Close()
	recv := exec.Command(self, "-peer", "recv", strconv.FormatInt(n, 10), "unix")
	send := exec.Command(self, "-peer", "send", strconv.FormatInt(n, 10), "unix")
	recv.ExtraFiles, send.ExtraFiles = []*os.File{a}, []*os.File{b}
	return runPair(recv, send, false)
}

// runPair starts the receiver (waiting for "listening" if it listens),
// then the sender, and times until both are done.
func runPair(recv, send *exec.Cmd, waitListen bool) (sample, error) {
	rout, err := recv.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	recv.Stderr, send.Stderr = os.Stderr, os.Stderr
	if err := recv.Start(); err != nil {
		return sample{}, err
	}
	rr := bufio.NewReader(rout)
	if waitListen {
		if line, err := rr.ReadString('\n'); err != nil || line != "listening\n" {
			recv.Process.Kill()
			recv.Wait()
			return sample{}, fmt.Errorf("receiver said %q, %v", line, err)
		}
	}
	sout, err := send.StdoutPipe()
	if err != nil {
		return sample{}, err
	}
	start := time.Now()
	if err := send.Start(); err != nil {
		return sample{}, err
	}
	rcpu, rerr := rr.ReadString('\n')
	scpu, serr := bufio.NewReader(sout).ReadString('\n')
	took := time.Since(start)
	if err := recv.Wait(); err != nil || rerr != nil {
		return sample{}, fmt.Errorf("receiver: %v %v", err, rerr)
	}
	if err := send.Wait(); err != nil || serr != nil {
		return sample{}, fmt.Errorf("sender: %v %v", err, serr)
	}
	n := mustInt(send.Args[3])
	cpu := float64(mustInt(strings.TrimSpace(rcpu))+mustInt(strings.TrimSpace(scpu))) / 1e6
	return sample{mbps: float64(n) / took.Seconds() / 1e6, cpuPerMiB: cpu / float64(n>>20)}, nil
}

//go:build linux

package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/vchan-go/vchan/vchan"
)

// The peer role: one end of one benchmark connection, in its own process.
// It speaks the command protocol of interop/peer/vchan-peer.c, so the
// driver treats Go and C peers alike: "peer: connected" on stderr once
// connected; then for each line "N" on stdin it moves N bytes (sink,
// source) or makes N 1-byte round trips (ping) and prints a line starting
// "ok" on stdout. echo writes back what it reads until the peer closes.
// A Go peer's "ok" line also reports "ok <mallocs> <ops> <gcs>": the heap
// allocations the process made during the command, the Read/Write calls it
// made, for the allocations-per-operation figure, and the garbage
// collections that ran during the command. The command loop itself
// allocates nothing once running (no strings, no boxed integers), so a
// peer whose Read and Write allocate nothing has no reason to collect.

type peerFlags struct {
	net    string // "vchan" or "unix"
	server bool
	dir    string // the simulator's directory
	dom    uint   // this process's domain
	remote uint   // the other domain
	path   string
	ring   int    // the server's minimum ring sizes, both ways
	mode   string // sink, source, echo, ping
	spin   string // "default", "off" or a duration
}

func peerMain(args []string) {
	var f peerFlags
	fs := flag.NewFlagSet("vchanbench peer", flag.ExitOnError)
	fs.StringVar(&f.net, "net", "vchan", "vchan, or unix (a connected socket on fd 3)")
	fs.BoolVar(&f.server, "server", false, "serve the vchan (default: dial it)")
	fs.StringVar(&f.dir, "dir", "", "the simulator's directory")
	fs.UintVar(&f.dom, "dom", 0, "this process's domain")
	fs.UintVar(&f.remote, "remote", 0, "the other domain")
	fs.StringVar(&f.path, "path", "", "port or xenstore path")
	fs.IntVar(&f.ring, "ring", 0, "server's minimum ring size, both directions")
	fs.StringVar(&f.mode, "mode", "", "sink, source, echo or ping")
	fs.StringVar(&f.spin, "spin", "default", "Conn.SetSpinWait: default, off, or a duration")
	_ = fs.Parse(args)
	if err := runPeer(&f); err != nil {
		fmt.Fprintln(os.Stderr, "peer: error:", err)
		os.Exit(2)
	}
}

func runPeer(f *peerFlags) error {
	var c io.ReadWriteCloser
	switch f.net {
	case "unix":
		fc, err := net.FileConn(os.NewFile(3, "socket"))
		if err != nil {
			return err
		}
		c = fc
	case "vchan":
		h, err := vchan.SimHost(f.dir, uint16(f.dom))
		if err != nil {
			return err
		}
		defer h.Close()
		var vc *vchan.Conn
		if f.server {
			ln, err := vchan.Listen(uint16(f.remote), f.path, &vchan.Config{Host: h, ReadBufferSize: f.ring, WriteBufferSize: f.ring})
			if err != nil {
				return err
			}
			vc, err = ln.AcceptVchan()
			ln.Close()
			if err != nil {
				return err
			}
		} else if vc, err = vchan.Dial(uint16(f.remote), f.path, &vchan.Config{Host: h, WaitForServer: true}); err != nil {
			return err
		}
		switch f.spin {
		case "default":
		case "off":
			vc.SetSpinWait(0)
		default:
			d, err := time.ParseDuration(f.spin)
			if err != nil {
				return err
			}
			vc.SetSpinWait(d)
		}
		c = vc
	default:
		return fmt.Errorf("-net %q: want vchan or unix", f.net)
	}
	defer c.Close()
	fmt.Fprintln(os.Stderr, "peer: connected")
	if f.mode == "echo" {
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return err
			}
		}
	}
	buf := make([]byte, 64<<10)
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	var ms runtime.MemStats
	// VCHANBENCH_MEMPROFILE=prefix: record every allocation and write the
	// allocation profile to prefix.<pid> after each command, to find what
	// allocates.
	prof := os.Getenv("VCHANBENCH_MEMPROFILE")
	if prof != "" {
		runtime.MemProfileRate = 1
	}
	// VCHANBENCH_CPUPROFILE=prefix: profile the CPU from the first command
	// to the end, into prefix.<pid>.
	if cpu := os.Getenv("VCHANBENCH_CPUPROFILE"); cpu != "" {
		if f, err := os.Create(fmt.Sprintf("%s.%d", cpu, os.Getpid())); err == nil {
			if err := pprof.StartCPUProfile(f); err == nil {
				defer pprof.StopCPUProfile()
			}
		}
	}
	line := make([]byte, 0, 64)
	for in.Scan() {
		n, err := parseCount(in.Bytes())
		if err != nil {
			return err
		}
		runtime.ReadMemStats(&ms)
		mallocs, gcs := ms.Mallocs, ms.NumGC
		ops, err := work(c, f.mode, n, buf)
		if err != nil {
			return err
		}
		runtime.ReadMemStats(&ms)
		line = append(line[:0], "ok "...)
		line = strconv.AppendUint(line, ms.Mallocs-mallocs, 10)
		line = append(line, ' ')
		line = strconv.AppendInt(line, ops, 10)
		line = append(line, ' ')
		line = strconv.AppendUint(line, uint64(ms.NumGC-gcs), 10)
		line = append(line, '\n')
		if _, err := out.Write(line); err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	if prof != "" {
		runtime.GC() // the allocation profile is as of the last GC
		if f, err := os.Create(fmt.Sprintf("%s.%d", prof, os.Getpid())); err == nil {
			_ = pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	return in.Err()
}

// parseCount parses a command line, a decimal count, without allocating
// (strconv.ParseInt of string(b) would allocate the string's copy of a
// line longer than the compiler's stack buffer, and its error does).
func parseCount(b []byte) (int64, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || len(b) > 18 {
		return 0, fmt.Errorf("command %q: want a count", b)
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("command %q: want a count", b)
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// work runs one command and returns the number of Read and Write calls.
func work(c io.ReadWriter, mode string, n int64, buf []byte) (ops int64, err error) {
	switch mode {
	case "sink":
		for n > 0 {
			k, err := c.Read(buf[:min(int64(len(buf)), n)])
			if err != nil {
				return ops, err
			}
			ops++
			n -= int64(k)
		}
	case "source":
		for n > 0 {
			k, err := c.Write(buf[:min(int64(len(buf)), n)])
			if err != nil {
				return ops, err
			}
			ops++
			n -= int64(k)
		}
	case "ping":
		b := buf[:1]
		for range n {
			if _, err := c.Write(b); err != nil {
				return ops, err
			}
			if _, err := io.ReadFull(c, b); err != nil {
				return ops, err
			}
			ops += 2
		}
	default:
		return 0, fmt.Errorf("mode %q: want sink, source, echo or ping", mode)
	}
	return ops, nil
}

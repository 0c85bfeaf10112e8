// Command vchan-simd runs a simulated Xen host that separate processes
// share: grant tables, event channels and xenstored, so vchan programs run
// and talk to each other without Xen. See README.md.
//
// Usage:
//
//	vchan-simd [-dir DIR] [-grant-limit N] [-v]
//
// It always runs in the foreground; start it with "vchan-simd &". SIGINT
// or SIGTERM stop it cleanly.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/vchan-go/vchan/internal/simd/simdaemon"
	"github.com/vchan-go/vchan/internal/simd/simproto"
)

func main() {
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("vchan-simd: ")
	fs := flag.NewFlagSet("vchan-simd", flag.ExitOnError)
	dir := fs.String("dir", simproto.DefaultDir(), "directory for the sockets and state (env "+simproto.DirEnv+")")
	limit := fs.Int("grant-limit", simdaemon.DefaultGrantLimit, "pages one domain may have granted at once (like gntalloc's limit)")
	verbose := fs.Bool("v", false, "log every request to stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vchan-simd [-dir DIR] [-grant-limit N] [-v]\n\n"+
			"Runs a simulated Xen host (grant tables, event channels, xenstored) in the foreground.\n"+
			"Processes join it as domain N with VCHAN_HOST=sim:N (and VCHAN_SIM_DIR=DIR for a non-default -dir).\n\n")
		fs.PrintDefaults()
	}
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}
	cfg := simdaemon.Config{Dir: *dir, GrantLimit: *limit}
	if *verbose {
		cfg.Logf = log.Printf
	}
	// Signals are caught before the sockets exist, so a signal never leaves
	// them behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	d, err := simdaemon.Start(cfg)
	if err != nil {
		if errors.Is(err, simdaemon.ErrAlreadyRunning) {
			fmt.Fprintln(os.Stderr, err)
		} else {
			log.Print(err)
		}
		os.Exit(1)
	}
	log.Printf("serving in %s (pid %d); xenstore of dom0: XENSTORED_PATH=%s", d.Dir(), os.Getpid(), simproto.XenstorePath(d.Dir(), 0))
	s := <-sigs
	log.Printf("%v: shutting down", s)
	d.Close()
}

// Command procstat runs a command and reports, on stderr, what it cost:
// its context switches and CPU time (its own and its children's, from
// wait4's rusage). xenlab uses it to count, per MiB and per round trip,
// what each side of a transfer spends, for Go and for libxenvchan alike.
//
//	procstat [-o FILE] COMMAND [ARG...]
//
// (It once also derived the vchan's event-channel interrupts from
// /proc/stat and /proc/interrupts; on the lab's Xen that gave 0 to 0.1 per
// round trip for C, which takes one, so it was dropped.)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	out := flag.String("o", "", "write the report to this file instead of stderr")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: procstat [-o FILE] COMMAND [ARG...]")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	rc := 0
	if err != nil {
		rc = 1
		if ee, ok := err.(*exec.ExitError); ok {
			rc = ee.ExitCode()
		}
	}
	report := "procstat rc=? (the command did not start: " + fmt.Sprint(err) + ")\n"
	if cmd.ProcessState == nil {
		// did not start: the report above
	} else if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		report = fmt.Sprintf("procstat rc=%d vcsw=%d ivcsw=%d user_ms=%d sys_ms=%d\n",
			rc, ru.Nvcsw, ru.Nivcsw, ru.Utime.Nano()/1e6, ru.Stime.Nano()/1e6)
	}
	if *out != "" {
		if werr := os.WriteFile(*out, []byte(report), 0o644); werr != nil {
			fmt.Fprintln(os.Stderr, "procstat:", werr)
		}
	} else {
		fmt.Fprint(os.Stderr, report)
	}
	os.Exit(rc)
}

// Command procstat runs a command and reports, on stderr, what it cost:
// its context switches and CPU time (its own and its children's, from
// wait4's rusage), and the event-channel interrupts its domain took for
// ports that were bound only during the run. xenlab uses it to count, per
// MiB and per round trip, what each side of a transfer spends, for Go and
// for libxenvchan alike.
//
//	procstat [-o FILE] COMMAND [ARG...]
//
// The interrupt count: a vchan's event channel has an interrupt line of its
// own in /proc/interrupts (xen-dyn ... evtchn:<comm>) that exists only while
// the port is bound, so a before/after difference of that file misses it.
// The total in /proc/stat's intr line does not; the count reported is the
// growth of that total minus the growth of every line present before and
// after, minus lines that appeared and stayed: what the transient lines
// took, give or take the interrupts that land between the reads of the two
// files. The domain's other transient ports (none in the lab) would count
// too.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
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
	total0, lines0 := interrupts()
	cmd := exec.Command(flag.Arg(0), flag.Args()[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	total1, lines1 := interrupts()
	transient := total1 - total0
	for name, n1 := range lines1 {
		if n0, ok := lines0[name]; ok {
			transient -= n1 - n0
		} else {
			transient -= n1
		}
	}
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
		report = fmt.Sprintf("procstat rc=%d vcsw=%d ivcsw=%d user_ms=%d sys_ms=%d transient_irqs=%d\n",
			rc, ru.Nvcsw, ru.Nivcsw, ru.Utime.Nano()/1e6, ru.Stime.Nano()/1e6, transient)
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

// interrupts returns the total of /proc/stat's intr line and each
// /proc/interrupts line's count summed over CPUs, keyed by the line's
// label and description (the numeric IRQ labels are reused as ports come
// and go, so the description is part of the key).
func interrupts() (int64, map[string]int64) {
	var total int64
	if f, err := os.Open("/proc/stat"); err == nil {
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if fs := strings.Fields(sc.Text()); len(fs) > 1 && fs[0] == "intr" {
				total, _ = strconv.ParseInt(fs[1], 10, 64)
			}
		}
		f.Close()
	}
	lines := map[string]int64{}
	f, err := os.Open("/proc/interrupts")
	if err != nil {
		return total, lines
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	ncpu := -1
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if ncpu < 0 { // the header: one column per CPU
			ncpu = len(fs)
			continue
		}
		if len(fs) < 2 || !strings.HasSuffix(fs[0], ":") {
			continue
		}
		var n int64
		i := 1
		for ; i < len(fs) && i <= ncpu; i++ {
			v, err := strconv.ParseInt(fs[i], 10, 64)
			if err != nil {
				break
			}
			n += v
		}
		lines[fs[0]+" "+strings.Join(fs[i:], " ")] = n
	}
	return total, lines
}

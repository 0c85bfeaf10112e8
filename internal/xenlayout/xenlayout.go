// Package xenlayout is test support for the Xen device packages: it proves
// that the ioctl numbers and struct layouts written by hand in Go match the
// Linux uapi headers (/usr/include/xen/*.h), the way golang.org/x/sys/unix
// checks its own constants against C.
//
// It writes a small C program that includes the headers and prints one
// "name value" line per C expression, builds it with gcc, runs it, and
// compares every value with the Go one.
//
// Only tests import it.
package xenlayout

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Prelude is included before the Xen headers. They do not all compile
// standalone: <xen/gntdev.h> and <xen/evtchn.h> use the hypervisor's
// grant_ref_t and domid_t without defining them, and the _IOC macro comes
// from <linux/ioctl.h>. The typedefs are the hypervisor's (xen/include/public
// grant_table.h and xen.h).
const Prelude = `#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/ioctl.h>
#include <linux/types.h>
typedef uint16_t domid_t;
typedef uint32_t grant_ref_t;
`

// Check is one value to compare.
type Check struct {
	// Name labels the value in the C program's output and in failures.
	Name string
	// C is an integer C expression, such as
	// "offsetof(struct ioctl_gntdev_map_grant_ref, index)".
	C string
	// Go is the Go value it must equal.
	Go uint64
}

// InstallHint says how to get gcc and the headers.
const InstallHint = "run the repository's install script; it must install gcc and " +
	"linux-libc-dev (apt-get install gcc linux-libc-dev), which provides /usr/include/xen"

// UseInteropHeaders puts the include directory of Debian's libxen-dev, as
// scripts/interop-deps.sh unpacks it ($VCHAN_INTEROP_CACHE, default
// <repo>/.cache/interop, seen from a package two levels down), ahead of the
// system's in CPATH for the rest of the test, so that the Xen headers come
// from that package. It skips the test when marker (a header file) is not
// there.
func UseInteropHeaders(t *testing.T, marker string) {
	t.Helper()
	cache := os.Getenv("VCHAN_INTEROP_CACHE")
	if cache == "" {
		cache = filepath.Join("..", "..", ".cache", "interop")
	}
	inc, err := filepath.Abs(filepath.Join(cache, "root", "usr", "include"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(inc, marker)); err != nil {
		t.Skipf("Xen's %s is not unpacked in %s: run scripts/interop-deps.sh to fetch it (Debian's libxen-dev)", marker, inc)
	}
	cpath := inc
	if old := os.Getenv("CPATH"); old != "" {
		cpath += string(os.PathListSeparator) + old
	}
	t.Setenv("CPATH", cpath)
}

// Compare builds a C program including headers (such as "xen/gntdev.h";
// an entry that starts with "#" is a directive written as it is, such as a
// #define that the headers read),
// evaluates every check's C expression and reports each mismatch with
// t.Errorf. If gcc or a header is missing, the test fails when the CI
// environment variable is set and is skipped otherwise.
func Compare(t testing.TB, headers []string, checks []Check) {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		missing(t, "gcc not found in PATH")
		return
	}
	dir := t.TempDir()

	var inc strings.Builder
	inc.WriteString(Prelude)
	for _, h := range headers {
		if strings.HasPrefix(h, "#") {
			inc.WriteString(h + "\n") // a directive, such as a #define the headers read
			continue
		}
		fmt.Fprintf(&inc, "#include <%s>\n", h)
	}

	// First only the includes: a failure here means the environment lacks
	// the headers, not that a check is wrong.
	if out, err := build(gcc, dir, "includes", inc.String()+"int main(void) { return 0; }\n"); err != nil {
		missing(t, fmt.Sprintf("the headers %v do not compile: %v\n%s", headers, err, out))
		return
	}

	var prog strings.Builder
	prog.WriteString(inc.String())
	prog.WriteString("int main(void) {\n")
	for _, c := range checks {
		if strings.ContainsAny(c.Name, " \t\n\"\\") || c.Name == "" {
			t.Fatalf("xenlayout: bad check name %q", c.Name)
		}
		fmt.Fprintf(&prog, "\tprintf(\"%%s %%llu\\n\", \"%s\", (unsigned long long)(%s));\n", c.Name, c.C)
	}
	prog.WriteString("\treturn 0;\n}\n")

	out, err := build(gcc, dir, "layout", prog.String())
	if err != nil {
		t.Fatalf("xenlayout: the check program does not compile (a wrong field or macro name?): %v\n%s\nprogram:\n%s", err, out, prog.String())
	}
	run := exec.Command(filepath.Join(dir, "layout"))
	res, err := run.Output()
	if err != nil {
		t.Fatalf("xenlayout: running the check program: %v", err)
	}
	got, err := parse(res)
	if err != nil {
		t.Fatalf("xenlayout: %v\noutput:\n%s", err, res)
	}
	for _, c := range checks {
		v, ok := got[c.Name]
		switch {
		case !ok:
			t.Errorf("%s: no value printed by the C program", c.Name)
		case v != c.Go:
			t.Errorf("%s: C %s = %d (%#x), Go has %d (%#x)", c.Name, c.C, v, v, c.Go, c.Go)
		default:
			t.Logf("%s = %d (%#x): Go matches C %s", c.Name, v, v, c.C)
		}
	}
}

// build compiles src into dir/name.
func build(gcc, dir, name, src string) ([]byte, error) {
	cfile := filepath.Join(dir, name+".c")
	if err := os.WriteFile(cfile, []byte(src), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(gcc, "-Wall", "-Werror", "-o", filepath.Join(dir, name), cfile)
	return cmd.CombinedOutput()
}

// parse reads "name value" lines.
func parse(out []byte) (map[string]uint64, error) {
	m := make(map[string]uint64)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			return nil, fmt.Errorf("bad line %q", sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in line %q: %v", sc.Text(), err)
		}
		m[f[0]] = v
	}
	return m, sc.Err()
}

// missing fails (under CI) or skips (elsewhere) a test whose tools are absent.
func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot check the Xen ioctl layouts: %s; %s", why, InstallHint)
	}
	t.Skipf("cannot check the Xen ioctl layouts: %s; %s (this test fails instead of skipping when CI is set)", why, InstallHint)
}

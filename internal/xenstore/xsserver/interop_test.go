package xsserver_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vchan-go/vchan/internal/xenstore"
	"github.com/vchan-go/vchan/internal/xenstore/xsclient"
	"github.com/vchan-go/vchan/internal/xenstore/xssim"
)

// cTools are the libxenstore command-line tools from Debian's
// xenstore-utils package.
var cTools = []string{"xenstore-write", "xenstore-read", "xenstore-ls", "xenstore-watch", "xenstore-chmod", "xenstore-rm"}

// needCTools skips the test when the C tools are missing, or fails it when
// $CI is set.
func needCTools(t *testing.T) {
	t.Helper()
	for _, name := range cTools {
		if _, err := exec.LookPath(name); err != nil {
			msg := name + " not found: install the Debian package xenstore-utils (apt-get install xenstore-utils) to run the interop test"
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// tool runs one of the C tools against sock and returns its stdout.
func tool(t *testing.T, sock string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), errors.New(name + ": " + err.Error() + ": " + strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

func mustTool(t *testing.T, sock string, name string, args ...string) string {
	t.Helper()
	out, err := tool(t, sock, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestInteropWithCTools(t *testing.T) {
	needCTools(t)
	store := xssim.NewStore(xssim.DefaultLimits())
	sock, _ := start(t, store, nil)
	c, err := xsclient.DialSocket(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// xenstore-write (which runs inside a transaction), our client reads.
	mustTool(t, sock, "xenstore-write", "/interop/a", "hello", "/interop/b", "world")
	if v, err := c.Read("/interop/a"); err != nil || string(v) != "hello" {
		t.Fatalf("our read of C write: %q %v", v, err)
	}
	if v, err := c.Read("/interop/b"); err != nil || string(v) != "world" {
		t.Fatalf("our read of C write: %q %v", v, err)
	}

	// Our client writes, xenstore-read and xenstore-ls see it.
	if err := c.Write("/interop/c", []byte("from go")); err != nil {
		t.Fatal(err)
	}
	if out := mustTool(t, sock, "xenstore-read", "/interop/c"); out != "from go\n" {
		t.Fatalf("xenstore-read: %q", out)
	}
	if err := c.Mkdir("/interop/dir/sub"); err != nil {
		t.Fatal(err)
	}
	ls := mustTool(t, sock, "xenstore-ls", "-f", "/interop")
	for _, want := range []string{`/interop/a = "hello"`, `/interop/b = "world"`, `/interop/c = "from go"`, `/interop/dir/sub = ""`} {
		if !strings.Contains(ls, want) {
			t.Errorf("xenstore-ls output lacks %q:\n%s", want, ls)
		}
	}
	if _, err := tool(t, sock, "xenstore-read", "/interop/absent"); err == nil {
		t.Error("xenstore-read of an absent node succeeded")
	}

	// xenstore-chmod sets permissions our client sees, and xenstore-ls -p
	// shows ours.
	mustTool(t, sock, "xenstore-chmod", "/interop/a", "n0", "r5", "b7")
	perms, err := c.GetPerms("/interop/a")
	want := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}, {Domain: 5, Access: xenstore.AccessRead}, {Domain: 7, Access: xenstore.AccessBoth}}
	if err != nil || !slices.Equal(perms, want) {
		t.Fatalf("perms after xenstore-chmod: %v %v", perms, err)
	}
	if err := c.SetPerms("/interop/c", []xenstore.Perm{{Domain: 0, Access: xenstore.AccessRead}, {Domain: 3, Access: xenstore.AccessWrite}}); err != nil {
		t.Fatal(err)
	}
	if lsp := mustTool(t, sock, "xenstore-ls", "-p", "/interop"); !strings.Contains(lsp, "(r0,w3)") {
		t.Errorf("xenstore-ls -p lacks (r0,w3):\n%s", lsp)
	}

	// xenstore-rm removes what our client then misses.
	mustTool(t, sock, "xenstore-rm", "/interop/b")
	if _, err := c.Read("/interop/b"); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("after xenstore-rm: %v", err)
	}

	// xenstore-watch sees the registration event, then our change.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xenstore-watch", "-n", "2", "/interop/w")
	cmd.Env = append(os.Environ(), "XENSTORED_PATH="+sock)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		cmd.Wait()
		t.Fatalf("xenstore-watch printed nothing: %s", stderr.String())
	}
	if first := lines.Text(); first != "/interop/w" {
		t.Fatalf("xenstore-watch first event %q", first)
	}
	if err := c.Write("/interop/w/x", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if !lines.Scan() {
		cmd.Wait()
		t.Fatalf("xenstore-watch missed our change: %s", stderr.String())
	}
	if second := lines.Text(); second != "/interop/w/x" {
		t.Fatalf("xenstore-watch second event %q", second)
	}
	for lines.Scan() {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("xenstore-watch: %v: %s", err, stderr.String())
	}
}

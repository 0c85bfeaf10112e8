package simproto

import (
	"os"
	"strconv"
	"testing"
)

func TestDefaultDir(t *testing.T) {
	t.Setenv(DirEnv, "")
	t.Setenv("XDG_RUNTIME_DIR", "")
	if got, want := DefaultDir(), "/tmp/vchan-sim-"+strconv.Itoa(os.Getuid()); got != want {
		t.Errorf("DefaultDir() = %q, want %q", got, want)
	}
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/7")
	if got := DefaultDir(); got != "/run/user/7/vchan-sim" {
		t.Errorf("DefaultDir() with XDG_RUNTIME_DIR = %q", got)
	}
	t.Setenv(DirEnv, "/x/y")
	if got := DefaultDir(); got != "/x/y" {
		t.Errorf("DefaultDir() with %s = %q", DirEnv, got)
	}
}

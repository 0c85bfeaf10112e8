package vchan

import (
	"strings"
	"testing"

	"github.com/vchan-go/vchan/internal/testutil"
)

func TestSimHostNotRunning(t *testing.T) {
	_, err := SimHost(testutil.SocketDir(t), 1)
	if err == nil || !strings.Contains(err.Error(), "vchan-simd") {
		t.Fatalf("SimHost with no daemon = %v, want a hint to start vchan-simd", err)
	}
	t.Setenv(HostEnv, "sim:70000")
	if _, err := DefaultHost(); err == nil || !strings.Contains(err.Error(), "sim:<domid>") {
		t.Errorf("DefaultHost with a bad domid = %v", err)
	}
	t.Setenv(HostEnv, "sim:1")
	t.Setenv("VCHAN_SIM_DIR", testutil.SocketDir(t))
	if _, err := DefaultHost(); err == nil || !strings.Contains(err.Error(), "vchan-simd") {
		t.Errorf("DefaultHost sim:1 with no daemon = %v, want a hint to start vchan-simd", err)
	}
}

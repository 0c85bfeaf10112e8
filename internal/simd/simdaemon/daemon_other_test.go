//go:build !linux

package simdaemon

import (
	"errors"
	"strings"
	"testing"
)

func TestNeedsLinux(t *testing.T) {
	if _, err := Start(Config{Dir: t.TempDir()}); !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "needs Linux") {
		t.Errorf("Start = %v, want an error wrapping errors.ErrUnsupported that says it needs Linux", err)
	}
}

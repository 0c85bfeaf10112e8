package vchanhttp

import (
	"os"
	"testing"

	"github.com/vchan-go/vchan/examples/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }

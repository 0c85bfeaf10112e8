package xssim

import (
	"errors"
	"reflect"
	"sort"
	"sync"
	"syscall"
	"testing"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// Events are delivered synchronously, in the goroutine of the operation that
// caused them, before that operation returns; the tests rely on that to check
// events right after each operation.

func newStore(t *testing.T, doms ...uint16) *Store {
	t.Helper()
	s := NewStore(DefaultLimits())
	for _, d := range append([]uint16{0}, doms...) {
		if err := s.IntroduceDomain(d); err != nil {
			t.Fatalf("IntroduceDomain(%d): %v", d, err)
		}
	}
	return s
}

// wantErr checks that err wraps errno (0: no error) and is an *Error.
func wantErr(t *testing.T, what string, err error, errno syscall.Errno) {
	t.Helper()
	if errno == 0 {
		if err != nil {
			t.Errorf("%s: unexpected error %v", what, err)
		}
		return
	}
	if !errors.Is(err, errno) {
		t.Errorf("%s: error %v, want %v", what, err, errno.Error())
		return
	}
	var xe *xenstore.Error
	if !errors.As(err, &xe) {
		t.Errorf("%s: error %v is not a *Error", what, err)
	}
}

func mustOK(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// recorder collects the watch events of a session.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) deliver(path, token string) {
	r.mu.Lock()
	r.evs = append(r.evs, path+" "+token)
	r.mu.Unlock()
}

// take returns the events so far, sorted, and forgets them.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := r.evs
	r.evs = nil
	sort.Strings(evs)
	return evs
}

func (r *recorder) expect(t *testing.T, what string, want ...string) {
	t.Helper()
	got := r.take()
	sort.Strings(want)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: events %q, want %q", what, got, want)
	}
}

func session(s *Store, d uint16) (*Session, *recorder) {
	r := &recorder{}
	return s.NewSession(d, r.deliver), r
}

// next returns the pending event of w. Events are delivered before the
// operation causing them returns, so one must be pending already.
func next(t *testing.T, w xenstore.Watch) string {
	t.Helper()
	select {
	case p, ok := <-w.Events():
		if !ok {
			t.Fatal("watch channel closed")
		}
		return p
	default:
		t.Fatal("no watch event pending")
		return ""
	}
}

// wantClosed drains w's channel and checks that it is closed.
func wantClosed(t *testing.T, w xenstore.Watch) {
	t.Helper()
	for {
		select {
		case _, ok := <-w.Events():
			if !ok {
				return
			}
		default:
			t.Fatal("watch channel not closed")
		}
	}
}

func walkPaths(s *Store) []string {
	var ps []string
	s.Walk(func(p string, _ []byte, _ []xenstore.Perm) { ps = append(ps, p) })
	return ps
}

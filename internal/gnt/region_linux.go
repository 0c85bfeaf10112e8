//go:build linux

package gnt

import "sync"

// mapping is the memory of a region of either device: Bytes until Close,
// which unmaps it once.
type mapping struct {
	mu  sync.Mutex
	mem []byte
}

// Bytes is the mapped memory; nil after Close.
func (m *mapping) Bytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mem
}

// close hands the memory to unmap, once: a second call reports
// errClosedRegion. The lock is held throughout, so a concurrent Bytes waits
// until the region is gone.
func (m *mapping) close(unmap func(mem []byte) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mem == nil {
		return errClosedRegion
	}
	mem := m.mem
	m.mem = nil
	return unmap(mem)
}

package xssim

import (
	"strconv"
	"syscall"

	"github.com/vchan-go/vchan/internal/xenstore"
)

// IntroduceDomain makes domain domid known: it creates its home,
// /local/domain/<domid>, owned by the domain (permissions "n<domid>"), and
// <home>/domid holding the decimal id, owned by dom0 and readable by the
// domain ("n0 r<domid>"), then fires the @introduceDomain watches.
// Introducing a domain twice is EEXIST.
func (s *Store) IntroduceDomain(domid uint16) error {
	s.mu.Lock()
	defer s.unlock()
	if s.introduced[domid] {
		return opError("introduce", "", syscall.EEXIST)
	}
	s.introduced[domid] = true
	v := view{s: s}
	home := xenstore.DomainPath(domid)
	n := v.get(home)
	if n == nil {
		s.create(s.root, v, home, nil)
		n = v.get(home)
	}
	v.set(home, &node{value: n.value, perms: []xenstore.Perm{{Domain: domid, Access: xenstore.AccessNone}}, children: n.children})
	v.record(change{path: home})

	idPath := home + "/domid"
	idPerms := []xenstore.Perm{{Domain: 0, Access: xenstore.AccessNone}}
	if domid != 0 {
		idPerms = append(idPerms, xenstore.Perm{Domain: domid, Access: xenstore.AccessRead})
	}
	if n := v.get(idPath); n == nil {
		s.create(s.root, v, idPath, nil)
	}
	n = v.get(idPath)
	v.set(idPath, &node{value: []byte(strconv.FormatUint(uint64(domid), 10)), perms: idPerms, children: n.children})
	v.record(change{path: idPath})

	s.fireSpecial(xenstore.IntroduceDomainPath)
	return nil
}

// ReleaseDomain forgets domain domid: it closes the domain's sessions,
// removes its home (firing watches as an rm does), gives any other node the
// domain still owns to dom0, frees its quota and fires the @releaseDomain
// watches. Releasing a domain that was not introduced is ENOENT; dom0 cannot
// be released (EINVAL).
func (s *Store) ReleaseDomain(domid uint16) error {
	s.mu.Lock()
	defer s.unlock()
	if domid == 0 {
		return opError("release", "", syscall.EINVAL)
	}
	if !s.introduced[domid] {
		return opError("release", "", syscall.ENOENT)
	}
	delete(s.introduced, domid)
	for c := range s.sessions {
		if c.domid == domid {
			s.closeSession(c)
		}
	}
	v := view{s: s}
	home := xenstore.DomainPath(domid)
	if v.get(home) != nil {
		s.rm(s.root, v, home)
	}
	var chown []string
	for p, n := range s.nodes {
		if n.owner() == domid {
			chown = append(chown, p)
		}
	}
	for _, p := range chown {
		n := s.nodes[p]
		perms := clonePerms(n.perms)
		perms[0].Domain = 0
		s.setNode(p, &node{value: n.value, perms: perms, children: n.children})
	}
	delete(s.owned, domid)
	delete(s.watchCount, domid)
	s.fireSpecial(xenstore.ReleaseDomainPath)
	return nil
}

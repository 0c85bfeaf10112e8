package xenstore

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
)

// Access is the access right of one permission entry, as its wire letter
// (docs/PROTOCOL.md §13.5).
type Access byte

// The four access rights.
const (
	AccessNone  Access = 'n' // no access
	AccessRead  Access = 'r' // read only
	AccessWrite Access = 'w' // write only
	AccessBoth  Access = 'b' // read and write
)

// Valid reports whether a is one of the four access letters.
func (a Access) Valid() bool {
	switch a {
	case AccessNone, AccessRead, AccessWrite, AccessBoth:
		return true
	}
	return false
}

// Perm is one permission entry of a node: a domain and its access right. In a
// node's permission list the first entry names the owner, which always has
// full access, and its Access is the default for domains without an entry of
// their own.
type Perm struct {
	Domain uint16
	Access Access
}

// String returns the wire form of p: the access letter followed by the
// decimal domain id, e.g. "n0" or "r5".
func (p Perm) String() string {
	return string(rune(p.Access)) + strconv.FormatUint(uint64(p.Domain), 10)
}

// maxQuoted bounds how much of a hostile input an error message repeats.
const maxQuoted = 64

func quoteTrunc(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

// ParsePerm parses one permission entry in its wire form: one of the letters
// n, r, w, b followed by a decimal domain id in 0..65535, and nothing else.
// Signs, spaces, hexadecimal or octal prefixes, leading zeros (other than the
// id "0" itself) and values that overflow 16 bits are rejected, so every
// accepted string is canonical: ParsePerm(s) succeeding implies
// p.String() == s. Errors wrap syscall.EINVAL.
func ParsePerm(s string) (Perm, error) {
	if len(s) < 2 {
		return Perm{}, permError(s)
	}
	a := Access(s[0])
	if !a.Valid() {
		return Perm{}, permError(s)
	}
	digits := s[1:]
	// At most 5 digits; no leading zero unless the id is exactly "0".
	if len(digits) > 5 || (len(digits) > 1 && digits[0] == '0') {
		return Perm{}, permError(s)
	}
	var id uint32
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return Perm{}, permError(s)
		}
		id = id*10 + uint32(c-'0')
	}
	if id > 0xffff {
		return Perm{}, permError(s)
	}
	return Perm{Domain: uint16(id), Access: a}, nil
}

func permError(s string) error {
	return fmt.Errorf("xenstore: invalid permission %s: %w", quoteTrunc(s), syscall.EINVAL)
}

// ParsePerms parses a permission list in its wire form: a sequence of
// NUL-terminated entries, e.g. "n0\x00r5\x00" (the GET_PERMS reply, or the
// SET_PERMS payload after the path). The terminator of the last entry may be
// missing. The list must hold at least one entry (the owner); empty entries
// and invalid entries are rejected. Errors wrap syscall.EINVAL.
func ParsePerms(data []byte) ([]Perm, error) {
	s := string(data)
	s = strings.TrimSuffix(s, "\x00")
	if s == "" {
		return nil, fmt.Errorf("xenstore: empty permission list: %w", syscall.EINVAL)
	}
	fields := strings.Split(s, "\x00")
	perms := make([]Perm, 0, len(fields))
	for _, f := range fields {
		p, err := ParsePerm(f)
		if err != nil {
			return nil, err
		}
		perms = append(perms, p)
	}
	return perms, nil
}

// FormatPerms returns the wire form of a permission list: each entry's
// String followed by a NUL byte, e.g. "n0\x00r5\x00".
func FormatPerms(perms []Perm) []byte {
	b := make([]byte, 0, len(perms)*4)
	for _, p := range perms {
		b = append(b, p.String()...)
		b = append(b, 0)
	}
	return b
}

// Package xswire encodes and decodes the xenstore wire protocol (xs_wire.h;
// docs/PROTOCOL.md §13): a 16-byte header of four native-endian uint32 fields
// (type, req_id, tx_id, len) followed by len bytes of payload, usually
// NUL-terminated strings.
//
// Everything read from the wire is untrusted. ReadMessage checks the length
// field against a caller-supplied maximum before it allocates or reads the
// payload, and the payload parsers reject anything that is not exactly the
// shape the protocol prescribes.
package xswire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Type is a xenstore message type (enum xsd_sockmsg_type).
type Type uint32

// The message types of xs_wire.h. The numbering is fixed by the protocol.
const (
	Control            Type = 0  // XS_CONTROL, formerly XS_DEBUG
	Directory          Type = 1  // XS_DIRECTORY
	Read               Type = 2  // XS_READ
	GetPerms           Type = 3  // XS_GET_PERMS
	Watch              Type = 4  // XS_WATCH
	Unwatch            Type = 5  // XS_UNWATCH
	TransactionStart   Type = 6  // XS_TRANSACTION_START
	TransactionEnd     Type = 7  // XS_TRANSACTION_END
	Introduce          Type = 8  // XS_INTRODUCE
	Release            Type = 9  // XS_RELEASE
	GetDomainPath      Type = 10 // XS_GET_DOMAIN_PATH
	Write              Type = 11 // XS_WRITE
	Mkdir              Type = 12 // XS_MKDIR
	Rm                 Type = 13 // XS_RM
	SetPerms           Type = 14 // XS_SET_PERMS
	WatchEvent         Type = 15 // XS_WATCH_EVENT
	Error              Type = 16 // XS_ERROR
	IsDomainIntroduced Type = 17 // XS_IS_DOMAIN_INTRODUCED
	Resume             Type = 18 // XS_RESUME
	SetTarget          Type = 19 // XS_SET_TARGET
	Restrict           Type = 20 // XS_RESTRICT, removed from Xen; now invalid
	ResetWatches       Type = 21 // XS_RESET_WATCHES
	DirectoryPart      Type = 22 // XS_DIRECTORY_PART
	GetFeature         Type = 23 // XS_GET_FEATURE
	SetFeature         Type = 24 // XS_SET_FEATURE
	GetQuota           Type = 25 // XS_GET_QUOTA
	SetQuota           Type = 26 // XS_SET_QUOTA

	// TypeCount is XS_TYPE_COUNT, one more than the highest defined type.
	TypeCount Type = 27
	// Invalid is XS_INVALID, guaranteed never to be a valid type.
	Invalid Type = 0xffff
)

// Debug is the historical name of Control.
const Debug = Control

var typeNames = [...]string{
	Control:            "CONTROL",
	Directory:          "DIRECTORY",
	Read:               "READ",
	GetPerms:           "GET_PERMS",
	Watch:              "WATCH",
	Unwatch:            "UNWATCH",
	TransactionStart:   "TRANSACTION_START",
	TransactionEnd:     "TRANSACTION_END",
	Introduce:          "INTRODUCE",
	Release:            "RELEASE",
	GetDomainPath:      "GET_DOMAIN_PATH",
	Write:              "WRITE",
	Mkdir:              "MKDIR",
	Rm:                 "RM",
	SetPerms:           "SET_PERMS",
	WatchEvent:         "WATCH_EVENT",
	Error:              "ERROR",
	IsDomainIntroduced: "IS_DOMAIN_INTRODUCED",
	Resume:             "RESUME",
	SetTarget:          "SET_TARGET",
	Restrict:           "RESTRICT",
	ResetWatches:       "RESET_WATCHES",
	DirectoryPart:      "DIRECTORY_PART",
	GetFeature:         "GET_FEATURE",
	SetFeature:         "SET_FEATURE",
	GetQuota:           "GET_QUOTA",
	SetQuota:           "SET_QUOTA",
}

// String returns the xs_wire.h name of t without the XS_ prefix, or a
// numeric form for types the protocol does not define.
func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	if t == Invalid {
		return "INVALID"
	}
	return "TYPE(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// Sizes and limits of the protocol (xs_wire.h; docs/PROTOCOL.md §13.3, §13.6).
const (
	// HeaderSize is the size of struct xsd_sockmsg.
	HeaderSize = 16
	// PayloadMax is XENSTORE_PAYLOAD_MAX, the largest payload xenstored
	// accepts; a client exceeding it has its connection killed.
	PayloadMax = 4096
	// DevicePayloadMax is the largest payload that fits the Linux
	// /dev/xen/xenbus device's 4096-byte message buffer with its header.
	DevicePayloadMax = 4096 - HeaderSize
	// AbsPathMax is XENSTORE_ABS_PATH_MAX.
	AbsPathMax = 3072
	// RelPathMax is XENSTORE_REL_PATH_MAX.
	RelPathMax = 2048
)

// Header is struct xsd_sockmsg. Its fields are native-endian on the wire.
type Header struct {
	Type  Type
	ReqID uint32 // echoed in the reply
	TxID  uint32 // 0 when not part of a transaction
	Len   uint32 // payload bytes that follow
}

// Message is one complete xenstore message.
type Message struct {
	Type    Type
	ReqID   uint32
	TxID    uint32
	Payload []byte
}

// Errors returned by the codec and the payload parsers.
var (
	// ErrTooLarge reports a message whose len field exceeds the limit
	// the reader allows. The stream cannot be resynchronised after it.
	ErrTooLarge = errors.New("xenstore message payload too large")
	// ErrNotTerminated reports a payload string that lacks its NUL.
	ErrNotTerminated = errors.New("xenstore payload string not NUL-terminated")
	// ErrStringCount reports a payload with the wrong number of strings.
	ErrStringCount = errors.New("xenstore payload has the wrong number of strings")
	// ErrEmbeddedNUL reports a string that cannot be sent because it
	// contains a NUL byte.
	ErrEmbeddedNUL = errors.New("xenstore string contains a NUL byte")
)

// DecodeHeader decodes a header from the first HeaderSize bytes of b, which
// must be at least that long.
func DecodeHeader(b []byte) Header {
	_ = b[HeaderSize-1]
	ne := binary.NativeEndian
	return Header{
		Type:  Type(ne.Uint32(b[0:])),
		ReqID: ne.Uint32(b[4:]),
		TxID:  ne.Uint32(b[8:]),
		Len:   ne.Uint32(b[12:]),
	}
}

// AppendHeader appends the wire form of h to b.
func AppendHeader(b []byte, h Header) []byte {
	ne := binary.NativeEndian
	b = ne.AppendUint32(b, uint32(h.Type))
	b = ne.AppendUint32(b, h.ReqID)
	b = ne.AppendUint32(b, h.TxID)
	return ne.AppendUint32(b, h.Len)
}

// ReadMessage reads one message from r. It rejects, with an error wrapping
// ErrTooLarge, a header whose len exceeds maxPayload before reading or
// allocating any payload. A stream that ends inside a message yields
// io.ErrUnexpectedEOF; one that ends cleanly before a header yields io.EOF.
func ReadMessage(r io.Reader, maxPayload int) (Message, error) {
	var hb [HeaderSize]byte
	if _, err := io.ReadFull(r, hb[:]); err != nil {
		return Message{}, err
	}
	h := DecodeHeader(hb[:])
	if maxPayload < 0 || uint64(h.Len) > uint64(maxPayload) {
		return Message{}, fmt.Errorf("%w: %s message with %d bytes, limit %d", ErrTooLarge, h.Type, h.Len, maxPayload)
	}
	m := Message{Type: h.Type, ReqID: h.ReqID, TxID: h.TxID}
	if h.Len > 0 {
		m.Payload = make([]byte, h.Len)
		if _, err := io.ReadFull(r, m.Payload); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return Message{}, err
		}
	}
	return m, nil
}

// AppendMessage appends the wire form of m (header then payload) to b. It
// fails with ErrTooLarge when the payload does not fit a uint32 len.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	if uint64(len(m.Payload)) > uint64(^uint32(0)) {
		return b, ErrTooLarge
	}
	b = AppendHeader(b, Header{Type: m.Type, ReqID: m.ReqID, TxID: m.TxID, Len: uint32(len(m.Payload))})
	return append(b, m.Payload...), nil
}

// WriteMessage writes m to w with a single Write call, so that a writer
// shared under a lock, or the xenbus device, sees whole messages.
func WriteMessage(w io.Writer, m Message) error {
	b, err := AppendMessage(make([]byte, 0, HeaderSize+len(m.Payload)), m)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}

// SplitStrings splits a payload made of zero or more NUL-terminated strings.
// An empty payload gives no strings; a payload whose last byte is not NUL
// is rejected with ErrNotTerminated.
func SplitStrings(p []byte) ([]string, error) {
	if len(p) == 0 {
		return nil, nil
	}
	if p[len(p)-1] != 0 {
		return nil, ErrNotTerminated
	}
	n := bytes.Count(p, []byte{0})
	out := make([]string, 0, n)
	for len(p) > 0 {
		i := bytes.IndexByte(p, 0)
		out = append(out, string(p[:i]))
		p = p[i+1:]
	}
	return out, nil
}

// ExactStrings splits a payload that must consist of exactly n
// NUL-terminated strings, as xenstored's onearg and get_strings demand.
func ExactStrings(p []byte, n int) ([]string, error) {
	ss, err := SplitStrings(p)
	if err != nil {
		return nil, err
	}
	if len(ss) != n {
		return nil, fmt.Errorf("%w: got %d, want %d", ErrStringCount, len(ss), n)
	}
	return ss, nil
}

// SplitPathValue splits a WRITE payload: a NUL-terminated path followed by
// raw value bytes with no terminator. The value aliases p.
func SplitPathValue(p []byte) (path string, value []byte, err error) {
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return "", nil, ErrNotTerminated
	}
	return string(p[:i]), p[i+1:], nil
}

// ParseWatchEvent parses a WATCH_EVENT payload, `path\0token\0`. Bytes after
// the token are ignored: the Linux xenbus device may append more.
func ParseWatchEvent(p []byte) (path, token string, err error) {
	i := bytes.IndexByte(p, 0)
	if i < 0 {
		return "", "", ErrNotTerminated
	}
	path = string(p[:i])
	rest := p[i+1:]
	j := bytes.IndexByte(rest, 0)
	if j < 0 {
		return "", "", ErrNotTerminated
	}
	return path, string(rest[:j]), nil
}

// AppendString appends s and its NUL terminator to b, refusing a string that
// itself contains NUL (it would split into two on the wire).
func AppendString(b []byte, s string) ([]byte, error) {
	if strings.IndexByte(s, 0) >= 0 {
		return b, ErrEmbeddedNUL
	}
	b = append(b, s...)
	return append(b, 0), nil
}

// JoinStrings builds a payload of NUL-terminated strings, the inverse of
// SplitStrings.
func JoinStrings(ss ...string) ([]byte, error) {
	n := 0
	for _, s := range ss {
		n += len(s) + 1
	}
	b := make([]byte, 0, n)
	for _, s := range ss {
		var err error
		if b, err = AppendString(b, s); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// OKPayload returns a new "OK\0", the payload of a success reply that
// carries no data.
func OKPayload() []byte { return []byte{'O', 'K', 0} }

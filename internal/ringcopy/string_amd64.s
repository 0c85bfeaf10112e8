//go:build amd64 && !race

#include "textflag.h"

// func moveQuads(dst, src *byte, quads uintptr)
TEXT ·moveQuads(SB), NOSPLIT, $0-24
	MOVQ	dst+0(FP), DI
	MOVQ	src+8(FP), SI
	MOVQ	quads+16(FP), CX
	CLD
	REP;	MOVSQ
	RET

// SPDX-License-Identifier: Apache-2.0
//
// Where in a function an entry uprobe costs least (x86-64).
//
// The kernel handles a uprobe hit in one of two ways once the BPF program has run: it emulates
// the probed instruction (relative jumps, conditional jumps, calls, push of a register), or it
// copies the instruction out of line and single-steps it, which takes a second exception. On the
// machines this runs on the second way costs ~9 µs per hit and the first ~0.8 µs, so moving a
// probe from a function's first instruction (typically a load) to the first emulated instruction
// after it makes a hot lock function ~10x cheaper to trace.
//
// That is only right when every instruction before that place is straight-line code that leaves
// the registers the BPF program reads (the arguments) and the stack pointer as they were at the
// entry, and when nothing in the function jumps back into that stretch (the probe would fire
// twice per call). probe_place() checks both with a deliberately small decoder: any instruction
// it does not know, any prefix other than a REX byte or an %fs/%gs override on a load, and any
// byte sequence in the function that could be a relative jump back make it answer 0 (the
// entry). Indirect jumps (jump tables) into the first few instructions of a function are not
// looked for: compilers do not put case labels there.
#ifndef PROCIMAGE_LOCK_PLACEMENT_HPP
#define PROCIMAGE_LOCK_PLACEMENT_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace procimage::lock {

// x86-64 general registers, by their encoding number
enum x86_reg : uint32_t { RAX = 0, RCX, RDX, RBX, RSP, RBP, RSI, RDI };
constexpr uint32_t reg_bit(uint32_t r) { return 1u << r; }

namespace detail {

// Is the instruction at c (n bytes available) one the kernel emulates without single-stepping?
inline bool emulated(const uint8_t *c, size_t n)
{
	if (n < 1)
		return false;
	uint8_t b = c[0];
	if (b >= 0x50 && b <= 0x57) // push %reg
		return true;
	if ((b >= 0x70 && b <= 0x7f) || b == 0xeb) // jcc rel8, jmp rel8
		return n >= 2;
	if (b == 0xe9 || b == 0xe8) // jmp rel32, call rel32
		return n >= 5;
	if (b == 0x0f && n >= 6 && c[1] >= 0x80 && c[1] <= 0x8f) // jcc rel32
		return true;
	return false;
}

// Length of a ModRM operand (the ModRM byte, a SIB byte, a displacement), or 0 if cut short.
inline size_t modrm_len(const uint8_t *c, size_t n)
{
	if (n < 1)
		return 0;
	uint8_t mod = c[0] >> 6, rm = c[0] & 7;
	size_t len = 1;
	if (mod == 3)
		return len;
	if (rm == 4) {
		if (n < 2)
			return 0;
		len++;
		if (mod == 0 && (c[1] & 7) == 5)
			len += 4; // no base: disp32
	} else if (mod == 0 && rm == 5) {
		len += 4; // %rip + disp32
	}
	if (mod == 1)
		len += 1;
	else if (mod == 2)
		len += 4;
	return len <= n ? len : 0;
}

struct insn {
	size_t len = 0;             // 0: not one of the known straight-line instructions
	std::optional<uint32_t> writes; // the register it writes, if any
};

// The straight-line instructions probe_place() steps over: register moves, loads, lea, ALU
// operations on registers and compares, each with at most a REX prefix (and a segment override
// on a load). No store: a store before the probe could be the unlock being traced.
inline insn decode(const uint8_t *c, size_t n)
{
	insn out;
	if (n >= 4 && c[0] == 0xf3 && c[1] == 0x0f && c[2] == 0x1e && c[3] == 0xfa) {
		out.len = 4; // endbr64: a no-op outside indirect branch tracking
		return out;
	}
	size_t p = 0;
	bool seg = false;
	if (p < n && (c[p] == 0x64 || c[p] == 0x65)) { // %fs / %gs
		seg = true;
		p++;
	}
	uint8_t rex = 0;
	if (p < n && (c[p] & 0xf0) == 0x40)
		rex = c[p++];
	if (p >= n)
		return out;
	uint8_t op = c[p++];
	const uint32_t rex_r = (rex & 4) ? 8 : 0, rex_b = (rex & 1) ? 8 : 0;
	auto with_modrm = [&](bool dest_is_reg, bool writes, size_t imm) -> insn {
		insn r;
		size_t m = modrm_len(c + p, n - p);
		if (!m || p + m + imm > n)
			return r;
		uint8_t modrm = c[p];
		r.len = p + m + imm;
		if (writes) {
			if (dest_is_reg)
				r.writes = ((modrm >> 3) & 7) | rex_r;
			else if ((modrm >> 6) == 3)
				r.writes = (modrm & 7) | rex_b;
			else
				return insn{}; // a store: it may be the very thing being traced (an unlock)
		}
		return r;
	};
	if (seg) {
		if (op == 0x8b) // mov %seg:mem, %reg
			return with_modrm(true, true, 0);
		return out;
	}
	switch (op) {
	case 0x8b: // mov r/m, reg
	case 0x8d: // lea mem, reg
	case 0x03: case 0x0b: case 0x23: case 0x2b: case 0x33: // add/or/and/sub/xor r/m, reg
		return with_modrm(true, true, 0);
	case 0x89: // mov reg, r/m
	case 0x01: case 0x09: case 0x21: case 0x29: case 0x31: // add/or/and/sub/xor reg, r/m
		return with_modrm(false, true, 0);
	case 0x39: case 0x3b: case 0x85: // cmp, test: flags only
		return with_modrm(false, false, 0);
	case 0x83: case 0x81: { // ALU r/m, imm8 / imm32; /7 is cmp
		if (p >= n)
			return out;
		bool is_cmp = ((c[p] >> 3) & 7) == 7;
		return with_modrm(false, !is_cmp, op == 0x83 ? 1 : 4);
	}
	case 0xc7: // mov imm32, r/m (only /0 exists)
		if (p >= n || ((c[p] >> 3) & 7) != 0)
			return out;
		return with_modrm(false, true, 4);
	case 0x0f: // movzx
		if (p < n && (c[p] == 0xb6 || c[p] == 0xb7)) {
			p++;
			return with_modrm(true, true, 0);
		}
		return out;
	default:
		break;
	}
	if (op >= 0xb8 && op <= 0xbf) { // mov imm, %reg (imm64 with REX.W)
		size_t imm = (rex & 8) ? 8 : 4;
		if (p + imm > n)
			return out;
		out.len = p + imm;
		out.writes = (op & 7) | rex_b;
	}
	return out;
}

// Could bytes at some position of the function encode a relative jump or call to one of the
// offsets in targets? (Read at every byte position, so data or the middle of an instruction
// can only make this answer yes, never hide a real jump.)
inline bool may_jump_into(const uint8_t *c, size_t size, size_t from, const std::vector<size_t> &targets)
{
	auto hit = [&](int64_t t) {
		for (size_t x : targets)
			if (t == static_cast<int64_t>(x))
				return true;
		return false;
	};
	for (size_t i = from; i < size; i++) {
		uint8_t b = c[i];
		// jcc, jmp, loop*, jrcxz with an 8-bit displacement
		bool rel8 = (b >= 0x70 && b <= 0x7f) || b == 0xeb || (b >= 0xe0 && b <= 0xe3);
		if (rel8 && i + 2 <= size && hit(static_cast<int64_t>(i) + 2 + static_cast<int8_t>(c[i + 1])))
			return true;
		auto rel32 = [&](size_t at) {
			return static_cast<int32_t>(static_cast<uint32_t>(c[at]) | static_cast<uint32_t>(c[at + 1]) << 8 |
						    static_cast<uint32_t>(c[at + 2]) << 16 | static_cast<uint32_t>(c[at + 3]) << 24);
		};
		if ((b == 0xe9 || b == 0xe8) && i + 5 <= size && hit(static_cast<int64_t>(i) + 5 + rel32(i + 1)))
			return true;
		if (b == 0x0f && i + 6 <= size && c[i + 1] >= 0x80 && c[i + 1] <= 0x8f &&
		    hit(static_cast<int64_t>(i) + 6 + rel32(i + 2)))
			return true;
	}
	return false;
}

} // namespace detail

// The offset within a function (its code: size bytes from its first one) at which an entry
// uprobe is cheapest while the registers in keep (reg_bit() mask; %rsp is always kept) still
// hold their entry values; 0 (the entry) when no such place is known.
inline size_t probe_place(const uint8_t *code, size_t size, uint32_t keep, size_t max_skip = 32)
{
	keep |= reg_bit(RSP);
	std::vector<size_t> boundaries; // instruction starts after the entry, up to the place
	size_t at = 0;
	while (at < size && at <= max_skip) {
		if (detail::emulated(code + at, size - at)) {
			if (at == 0)
				return 0; // the entry itself is cheap
			if (detail::may_jump_into(code, size, 0, boundaries))
				return 0;
			return at;
		}
		detail::insn i = detail::decode(code + at, size - at);
		if (!i.len)
			return 0;
		if (i.writes && (keep & reg_bit(*i.writes)))
			return 0;
		at += i.len;
		boundaries.push_back(at);
	}
	return 0;
}

} // namespace procimage::lock

#endif // PROCIMAGE_LOCK_PLACEMENT_HPP

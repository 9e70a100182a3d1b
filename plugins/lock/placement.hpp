// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: where in a libc function an entry uprobe goes (x86-64).
//
// The kernel handles a uprobe hit in one of two ways once the BPF program has run: it emulates
// the probed instruction (relative jumps, conditional jumps, calls, and from Linux 6.3 a push of
// a register), or it copies the instruction out of line and single-steps it, which takes a
// second exception. On the machines this runs on the second way costs ~9 µs per hit and the
// first ~0.8 µs, so moving a probe from a function's first instruction (typically a load) to
// the first emulated instruction after it makes a hot lock function ~10x cheaper to trace.
//
// That is only right when every instruction before that place is straight-line code that leaves
// the registers the BPF program reads (the arguments) and the stack pointer as they were at the
// entry, stores nothing (a store could be the unlock being traced), and when nothing in the
// function jumps back into that stretch (the probe would fire twice per call). probe_place()
// decodes the instructions with Capstone and accepts only a short list of register and load
// instructions (moves, loads, lea, ALU operations, compares, endbr64), without prefixes other
// than an %fs/%gs override on a load; and it decodes the function at every byte position
// looking for a relative branch into the skipped stretch, so that data or the middle of an
// instruction can only make it answer "stay at the entry", never hide a real jump. Indirect
// jumps (jump tables) into the first few instructions of a function are not looked for:
// compilers do not put case labels there.
#ifndef PROCIMAGE_LOCK_PLACEMENT_HPP
#define PROCIMAGE_LOCK_PLACEMENT_HPP

#include <cstddef>
#include <cstdint>
#include <string>

namespace procimage::lock {

// x86-64 general registers, by their encoding number (R8..R15 are 8..15)
enum x86_reg : uint32_t { RAX = 0, RCX, RDX, RBX, RSP, RBP, RSI, RDI };
constexpr uint32_t reg_bit(uint32_t r) { return 1u << r; }

// Keeps the instruction decoder (Capstone, loaded on demand) open while it lives, so that the
// placements of one plan load it once; without one, each call loads and unloads it. ok() is
// false when it cannot be loaded (every place is then the entry), decoder_error() says why.
class placement_session {
public:
	placement_session();
	~placement_session();
	placement_session(const placement_session &) = delete;
	placement_session &operator=(const placement_session &) = delete;
	bool ok() const { return held_; }
	static std::string decoder_error();

private:
	bool held_;
};

// The offset within a function (its code: size bytes from its first one) at which an entry
// uprobe is cheapest while the registers in keep (reg_bit() mask; %rsp is always kept) still
// hold their entry values; 0 (the entry) when no such place is known, or when the code cannot
// be decoded.
size_t probe_place(const uint8_t *code, size_t size, uint32_t keep, size_t max_skip = 32);

// The same for the function at file offset off (size bytes: its ELF symbol's st_size) of the
// file at path, keeping %rdi (the lock): 0 when the file cannot be read.
uint64_t cheap_place(const std::string &path, uint64_t off, uint64_t size);

// x86-64 glibc's pthread_spin_lock, exactly: lock decl (%rdi); jne +x; xor %eax,%eax; ret
bool spin_lock_layout(const std::string &path, uint64_t off);

// The function at off starts with a lock-prefixed instruction, which the kernel refuses to
// probe.
bool first_insn_locked(const std::string &path, uint64_t off);

} // namespace procimage::lock

#endif // PROCIMAGE_LOCK_PLACEMENT_HPP

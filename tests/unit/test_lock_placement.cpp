// SPDX-License-Identifier: Apache-2.0
// Where the lock probe puts an entry uprobe inside a function (plugins/lock/placement.hpp):
// glibc 2.36's own function prologues, and the cases that must keep the probe at the entry.
#include "placement.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <string>
#include <vector>

using namespace procimage::lock;

namespace {

size_t place(std::vector<uint8_t> code, uint32_t keep = reg_bit(RDI))
{
	// pad like a function body: int3 bytes never decode as a jump
	code.resize(std::max<size_t>(code.size(), 64), 0xcc);
	return probe_place(code.data(), code.size(), keep);
}

} // namespace

TEST_CASE("lock placement: glibc 2.36 x86-64 lock functions")
{
	// pthread_mutex_lock: mov 0x10(%rdi),%eax; mov %eax,%edx; and $0x17f,%edx; and $0x7c,%eax; jne
	CHECK(place({0x8b, 0x47, 0x10, 0x89, 0xc2, 0x81, 0xe2, 0x7f, 0x01, 0x00, 0x00, 0x83, 0xe0, 0x7c, 0x0f, 0x85,
		     0xac, 0x00, 0x00, 0x00, 0x53}) == 14);
	// pthread_mutex_unlock: mov $1,%esi; jmp __pthread_mutex_unlock_usercnt
	CHECK(place({0xbe, 0x01, 0x00, 0x00, 0x00, 0xe9, 0xf6, 0xfe, 0xff, 0xff}) == 5);
	// pthread_rwlock_rdlock / wrlock: mov 0x18(%rdi),%edx; mov %fs:0x2d0,%eax; cmp %eax,%edx; je
	CHECK(place({0x8b, 0x57, 0x18, 0x64, 0x8b, 0x04, 0x25, 0xd0, 0x02, 0x00, 0x00, 0x39, 0xc2, 0x0f, 0x84, 0x0d,
		     0x01, 0x00, 0x00}) == 13);
	// a CET build's prologue: endbr64 first, then the same as above
	CHECK(place({0xf3, 0x0f, 0x1e, 0xfa, 0xbe, 0x01, 0x00, 0x00, 0x00, 0xe9, 0xf6, 0xfe, 0xff, 0xff}) == 9);
	CHECK(place({0xf3, 0x0f, 0x1e, 0xfa, 0x55}) == 4);
	// pthread_rwlock_unlock: push %rbp first: the entry is already cheap
	CHECK(place({0x55, 0x49, 0x89, 0xf8, 0x53}) == 0);
	// pthread_spin_unlock: movl $1,(%rdi) is the release itself (a store): stay at the entry
	CHECK(place({0xc7, 0x07, 0x01, 0x00, 0x00, 0x00, 0x31, 0xc0, 0xc3}) == 0);
}

TEST_CASE("lock placement: the entry whenever moving could be wrong")
{
	// the lock's register is overwritten before the jump: mov %rsi,%rdi; jmp
	CHECK(place({0x48, 0x89, 0xf7, 0xe9, 0x00, 0x00, 0x00, 0x00}) == 0);
	// ... but another one may be: mov %rdi,%rax; jmp
	CHECK(place({0x48, 0x89, 0xf8, 0xe9, 0x00, 0x00, 0x00, 0x00}) == 3);
	// %rsi kept too (a condition wait's mutex): mov $1,%esi; jmp
	CHECK(place({0xbe, 0x01, 0x00, 0x00, 0x00, 0xe9, 0, 0, 0, 0}, reg_bit(RDI) | reg_bit(RSI)) == 0);
	// REX.B: mov $1,%r15d writes r15, not rdi
	CHECK(place({0x41, 0xbf, 0x01, 0x00, 0x00, 0x00, 0xe9, 0, 0, 0, 0}) == 6);
	// the stack pointer: sub $8,%rsp; jmp
	CHECK(place({0x48, 0x83, 0xec, 0x08, 0xe9, 0, 0, 0, 0}) == 0);
	// a lock prefix, an operand-size prefix, an unknown opcode
	CHECK(place({0xf0, 0xff, 0x0f, 0x75, 0x05}) == 0);
	CHECK(place({0x66, 0x8b, 0x47, 0x10, 0xe9, 0, 0, 0, 0}) == 0);
	CHECK(place({0xf3, 0x0f, 0x1f, 0xfa, 0xe9, 0, 0, 0, 0}) == 0); // rep prefix on something else
	// a store before the jump
	CHECK(place({0x89, 0x07, 0xe9, 0, 0, 0, 0}) == 0);
	// cut short: the jump's displacement is past the end
	std::vector<uint8_t> short_code{0x8b, 0x47, 0x10, 0xe9, 0x00};
	CHECK(probe_place(short_code.data(), short_code.size(), reg_bit(RDI)) == 0);
	// too far in
	std::vector<uint8_t> far(40 * 2, 0x89);
	for (size_t i = 1; i < far.size(); i += 2)
		far[i] = 0xc0; // mov %eax,%eax
	far.push_back(0xe9);
	far.insert(far.end(), {0, 0, 0, 0});
	CHECK(probe_place(far.data(), far.size(), reg_bit(RDI)) == 0);
}

TEST_CASE("lock placement: a jump back into the skipped instructions keeps the probe at the entry")
{
	std::vector<uint8_t> code{0x8b, 0x47, 0x10, 0x89, 0xc2, 0x0f, 0x85, 0x10, 0x00, 0x00, 0x00};
	code.resize(64, 0xcc);
	REQUIRE(probe_place(code.data(), code.size(), reg_bit(RDI)) == 5);
	// jmp rel8 at 40 back to +3 (the second instruction): 40 + 2 + d = 3
	auto back8 = code;
	back8[40] = 0xeb;
	back8[41] = static_cast<uint8_t>(3 - 42);
	CHECK(probe_place(back8.data(), back8.size(), reg_bit(RDI)) == 0);
	// jne rel32 at 30 back to +5 (the probed instruction itself)
	auto back32 = code;
	int32_t d = 5 - 36;
	back32[30] = 0x0f;
	back32[31] = 0x85;
	for (int k = 0; k < 4; k++)
		back32[32 + k] = static_cast<uint8_t>(static_cast<uint32_t>(d) >> (8 * k));
	CHECK(probe_place(back32.data(), back32.size(), reg_bit(RDI)) == 0);
	// a jump back to the entry itself fires an entry probe as well: no reason to stay
	auto to_entry = code;
	to_entry[40] = 0xeb;
	to_entry[41] = static_cast<uint8_t>(0 - 42);
	CHECK(probe_place(to_entry.data(), to_entry.size(), reg_bit(RDI)) == 5);
}

TEST_CASE("lock placement: what the kernel emulates, as Capstone decodes it")
{
	// push %r12 (REX.B 0x41): emulated like push %rbx, so a load before it moves the probe
	CHECK(place({0x8b, 0x47, 0x10, 0x41, 0x54}) == 3);
	// push with any other REX byte (REX.W 0x48) is single-stepped: no cheap place in reach
	CHECK(place({0x8b, 0x47, 0x10, 0x48, 0x54, 0x8d, 0x05, 0, 0, 0, 0}) == 0);
	// jrcxz is a relative branch the kernel does not emulate: not a place
	CHECK(place({0x8b, 0x47, 0x10, 0xe3, 0x05}) == 0);
	// movslq 0x10(%rdi),%rax: a sign-extending load is straight-line code
	CHECK(place({0x48, 0x63, 0x47, 0x10, 0x75, 0x02}) == 4);
	// a jrcxz back into the stretch counts as a jump into it: jrcxz at 40 to +3
	std::vector<uint8_t> code{0x8b, 0x47, 0x10, 0x89, 0xc2, 0x0f, 0x85, 0x10, 0x00, 0x00, 0x00};
	code.resize(64, 0xcc);
	REQUIRE(place(code) == 5);
	code[40] = 0xe3;
	code[41] = static_cast<uint8_t>(3 - 42);
	CHECK(place(code) == 0);
}

TEST_CASE("lock placement: Capstone is loaded while placements are made, and unloaded after")
{
	auto mapped = [] {
		std::ifstream in("/proc/self/maps");
		std::string line;
		while (std::getline(in, line))
			if (line.find("libcapstone") != std::string::npos)
				return true;
		return false;
	};
	const std::vector<uint8_t> unlock = {0xbe, 0x01, 0x00, 0x00, 0x00, 0xe9, 0xf6, 0xfe, 0xff, 0xff};
	REQUIRE_FALSE(mapped());
	{
		placement_session s;
		INFO(placement_session::decoder_error());
		REQUIRE(s.ok());
		CHECK(mapped());
		CHECK(place(unlock) == 5);
		CHECK(place(unlock) == 5);
		CHECK(mapped()); // the session holds it between placements
	}
	CHECK_FALSE(mapped());
	// without a session, one placement loads and unloads it
	CHECK(place(unlock) == 5);
	CHECK_FALSE(mapped());
}

// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: where an entry uprobe goes inside a function (see placement.hpp), with
// the instructions decoded by Capstone.
//
// Capstone is opened with dlopen while placements are computed and closed after: its tables
// are about 5 MB of memory that a run would otherwise hold to its end for a few decodes per
// library at its start.
#include "placement.hpp"

#include <capstone/capstone.h>

#include <algorithm>
#include <dlfcn.h>
#include <fcntl.h>
#include <mutex>
#include <string>
#include <type_traits>
#include <unistd.h>
#include <vector>

// The library's file name: its ABI version is the API's major number (libcapstone.so.4 for 4.x)
#define PI_CS_STR2(x) #x
#define PI_CS_STR(x) PI_CS_STR2(x)
#define CAPSTONE_SONAME "libcapstone.so." PI_CS_STR(CS_API_MAJOR)

namespace procimage::lock {

namespace {

// The Capstone functions this file calls, from the library opened while anyone holds it.
struct capstone_lib {
	void *so = nullptr;
	decltype(&::cs_open) open = nullptr;
	decltype(&::cs_option) option = nullptr;
	decltype(&::cs_malloc) malloc = nullptr;
	decltype(&::cs_free) free = nullptr;
	decltype(&::cs_close) close = nullptr;
	decltype(&::cs_disasm_iter) disasm_iter = nullptr;
	decltype(&::cs_regs_access) regs_access = nullptr;
	unsigned users = 0;
	std::string error; // why the last dlopen failed
};

std::mutex capstone_mutex;
capstone_lib capstone;

// Opens the library for one more user: the functions, or nullptr when it cannot be loaded.
const capstone_lib *capstone_hold()
{
	std::lock_guard<std::mutex> lock(capstone_mutex);
	if (!capstone.so) {
		void *so = dlopen(CAPSTONE_SONAME, RTLD_NOW | RTLD_LOCAL);
		if (!so) {
			const char *e = dlerror();
			capstone.error = e ? e : CAPSTONE_SONAME ": cannot be opened";
			return nullptr;
		}
		capstone_lib c;
		c.so = so;
		bool all = true;
		auto sym = [&](auto &fn, const char *name) {
			fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(so, name));
			all = all && fn;
		};
		sym(c.open, "cs_open");
		sym(c.option, "cs_option");
		sym(c.malloc, "cs_malloc");
		sym(c.free, "cs_free");
		sym(c.close, "cs_close");
		sym(c.disasm_iter, "cs_disasm_iter");
		sym(c.regs_access, "cs_regs_access");
		if (!all) {
			dlclose(so);
			capstone.error = CAPSTONE_SONAME ": a function is missing";
			return nullptr;
		}
		capstone = c;
	}
	capstone.users++;
	return &capstone;
}

void capstone_release()
{
	std::lock_guard<std::mutex> lock(capstone_mutex);
	if (capstone.users && --capstone.users == 0) {
		dlclose(capstone.so);
		capstone = capstone_lib{};
	}
}

// A Capstone handle for x86-64 with operand details, and one instruction buffer.
class decoder {
public:
	decoder() : cs_(capstone_hold())
	{
		if (!cs_)
			return;
		if (cs_->open(CS_ARCH_X86, CS_MODE_64, &h_) != CS_ERR_OK) {
			h_ = 0;
			return;
		}
		if (cs_->option(h_, CS_OPT_DETAIL, CS_OPT_ON) != CS_ERR_OK || !(insn_ = cs_->malloc(h_))) {
			cs_->close(&h_);
			h_ = 0;
		}
	}
	~decoder()
	{
		if (insn_)
			cs_->free(insn_, 1);
		if (h_)
			cs_->close(&h_);
		if (cs_)
			capstone_release();
	}
	decoder(const decoder &) = delete;
	decoder &operator=(const decoder &) = delete;

	bool ok() const { return h_ != 0; }

	// The instruction at code[at] (the function's offsets are its addresses), or nullptr when
	// the bytes there are no complete instruction.
	const cs_insn *at(const uint8_t *code, size_t size, size_t at)
	{
		const uint8_t *p = code + at;
		size_t n = size - at;
		uint64_t addr = at;
		return cs_->disasm_iter(h_, &p, &n, &addr, insn_) ? insn_ : nullptr;
	}

	cs_err regs_access(const cs_insn &i, cs_regs read, uint8_t *nread, cs_regs written, uint8_t *nwritten) const
	{
		return cs_->regs_access(h_, &i, read, nread, written, nwritten);
	}

private:
	const capstone_lib *cs_;
	csh h_ = 0;
	cs_insn *insn_ = nullptr;
};

// The encoding number (0..15) of the general register a Capstone register is part of (%edi,
// %di, %dil are all %rdi), or -1 for any other register (flags, %rip, segments, vectors).
int gpr_of(unsigned reg)
{
	static const unsigned parts[16][5] = {
		{X86_REG_RAX, X86_REG_EAX, X86_REG_AX, X86_REG_AL, X86_REG_AH},
		{X86_REG_RCX, X86_REG_ECX, X86_REG_CX, X86_REG_CL, X86_REG_CH},
		{X86_REG_RDX, X86_REG_EDX, X86_REG_DX, X86_REG_DL, X86_REG_DH},
		{X86_REG_RBX, X86_REG_EBX, X86_REG_BX, X86_REG_BL, X86_REG_BH},
		{X86_REG_RSP, X86_REG_ESP, X86_REG_SP, X86_REG_SPL, X86_REG_SPL},
		{X86_REG_RBP, X86_REG_EBP, X86_REG_BP, X86_REG_BPL, X86_REG_BPL},
		{X86_REG_RSI, X86_REG_ESI, X86_REG_SI, X86_REG_SIL, X86_REG_SIL},
		{X86_REG_RDI, X86_REG_EDI, X86_REG_DI, X86_REG_DIL, X86_REG_DIL},
		{X86_REG_R8, X86_REG_R8D, X86_REG_R8W, X86_REG_R8B, X86_REG_R8B},
		{X86_REG_R9, X86_REG_R9D, X86_REG_R9W, X86_REG_R9B, X86_REG_R9B},
		{X86_REG_R10, X86_REG_R10D, X86_REG_R10W, X86_REG_R10B, X86_REG_R10B},
		{X86_REG_R11, X86_REG_R11D, X86_REG_R11W, X86_REG_R11B, X86_REG_R11B},
		{X86_REG_R12, X86_REG_R12D, X86_REG_R12W, X86_REG_R12B, X86_REG_R12B},
		{X86_REG_R13, X86_REG_R13D, X86_REG_R13W, X86_REG_R13B, X86_REG_R13B},
		{X86_REG_R14, X86_REG_R14D, X86_REG_R14W, X86_REG_R14B, X86_REG_R14B},
		{X86_REG_R15, X86_REG_R15D, X86_REG_R15W, X86_REG_R15B, X86_REG_R15B},
	};
	for (int n = 0; n < 16; n++)
		for (unsigned p : parts[n])
			if (p == reg)
				return n;
	return -1;
}

bool has_prefix(const cs_x86 &x)
{
	return x.prefix[0] || x.prefix[1] || x.prefix[2] || x.prefix[3];
}

bool is_jcc(unsigned id)
{
	switch (id) {
	case X86_INS_JA: case X86_INS_JAE: case X86_INS_JB: case X86_INS_JBE: case X86_INS_JE:
	case X86_INS_JG: case X86_INS_JGE: case X86_INS_JL: case X86_INS_JLE: case X86_INS_JNE:
	case X86_INS_JNO: case X86_INS_JNP: case X86_INS_JNS: case X86_INS_JO: case X86_INS_JP:
	case X86_INS_JS:
		return true;
	default:
		return false;
	}
}

// Does the kernel emulate this instruction rather than single-step it? Its x86 uprobe code
// emulates relative calls, jumps and conditional jumps (jrcxz and loop not, nor any of them
// with a prefix) and, from Linux 6.3, a push of a general register (with at most a REX.B
// prefix). On an older kernel a push at the entry is single-stepped there: the same cost as
// not moving, so placing by the newer rule is never worse.
bool emulated(const cs_insn &i)
{
	const cs_x86 &x = i.detail->x86;
	if (has_prefix(x) || x.op_count != 1)
		return false;
	const cs_x86_op &op = x.operands[0];
	if (i.id == X86_INS_PUSH)
		return op.type == X86_OP_REG && gpr_of(op.reg) >= 0 && op.size == 8 && (x.rex == 0 || x.rex == 0x41);
	if (i.id == X86_INS_JMP || i.id == X86_INS_CALL || is_jcc(i.id))
		return op.type == X86_OP_IMM && x.rex == 0;
	return false;
}

// A relative branch of any kind (also those the kernel does not emulate), and where it goes.
bool relative_branch(const cs_insn &i, int64_t &target)
{
	const cs_x86 &x = i.detail->x86;
	switch (i.id) {
	case X86_INS_JMP: case X86_INS_CALL: case X86_INS_JCXZ: case X86_INS_JECXZ: case X86_INS_JRCXZ:
	case X86_INS_LOOP: case X86_INS_LOOPE: case X86_INS_LOOPNE: case X86_INS_XBEGIN:
		break;
	default:
		if (!is_jcc(i.id))
			return false;
	}
	if (x.op_count != 1 || x.operands[0].type != X86_OP_IMM)
		return false;
	target = x.operands[0].imm;
	return true;
}

// A straight-line instruction that writes no memory and none of the registers in keep.
bool harmless(const decoder &d, const cs_insn &i, uint32_t keep)
{
	if (i.id == X86_INS_ENDBR64)
		return true; // a no-op outside indirect branch tracking
	switch (i.id) {
	case X86_INS_MOV: case X86_INS_MOVZX: case X86_INS_MOVSX: case X86_INS_MOVSXD: case X86_INS_LEA:
	case X86_INS_ADD: case X86_INS_ADC: case X86_INS_SUB: case X86_INS_SBB: case X86_INS_AND:
	case X86_INS_OR: case X86_INS_XOR: case X86_INS_CMP: case X86_INS_TEST:
		break;
	default:
		return false;
	}
	const cs_x86 &x = i.detail->x86;
	// no lock, rep, operand- or address-size prefix; a segment override only on a load (%fs:
	// or %gs: thread-local data, e.g. the thread's own id)
	if (x.prefix[0] || x.prefix[2] || x.prefix[3])
		return false;
	if (x.prefix[1] && !((x.prefix[1] == X86_PREFIX_FS || x.prefix[1] == X86_PREFIX_GS) && i.id == X86_INS_MOV))
		return false;
	for (uint8_t k = 0; k < x.op_count; k++)
		if (x.operands[k].type == X86_OP_MEM && (x.operands[k].access & CS_AC_WRITE))
			return false; // a store: it may be the very thing being traced (an unlock)
	cs_regs read, written;
	uint8_t nread = 0, nwritten = 0;
	if (d.regs_access(i, read, &nread, written, &nwritten) != CS_ERR_OK)
		return false;
	for (uint8_t k = 0; k < nwritten; k++) {
		if (written[k] == X86_REG_EFLAGS)
			continue;
		int n = gpr_of(written[k]);
		if (n < 0 || (keep & reg_bit(static_cast<uint32_t>(n))))
			return false;
	}
	return true;
}

// Could a relative branch decoded at any byte position of the function go to one of targets?
bool may_jump_into(decoder &d, const uint8_t *code, size_t size, const std::vector<size_t> &targets)
{
	for (size_t at = 0; at < size; at++) {
		const cs_insn *i = d.at(code, size, at);
		int64_t to = 0;
		if (i && relative_branch(*i, to) &&
		    std::find(targets.begin(), targets.end(), static_cast<size_t>(to)) != targets.end() && to >= 0)
			return true;
	}
	return false;
}

// size bytes of the file at path from off, or empty.
std::vector<uint8_t> read_at(const std::string &path, uint64_t off, size_t size)
{
	std::vector<uint8_t> b(size);
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return {};
	ssize_t n = pread(fd, b.data(), b.size(), static_cast<off_t>(off));
	close(fd);
	if (n != static_cast<ssize_t>(b.size()))
		return {};
	return b;
}

} // namespace

placement_session::placement_session() : held_(capstone_hold() != nullptr) {}

placement_session::~placement_session()
{
	if (held_)
		capstone_release();
}

std::string placement_session::decoder_error()
{
	std::lock_guard<std::mutex> lock(capstone_mutex);
	return capstone.error;
}

size_t probe_place(const uint8_t *code, size_t size, uint32_t keep, size_t max_skip)
{
	decoder d;
	if (!d.ok())
		return 0;
	keep |= reg_bit(RSP);
	std::vector<size_t> boundaries; // instruction starts after the entry, up to the place
	size_t at = 0;
	while (at < size && at <= max_skip) {
		const cs_insn *i = d.at(code, size, at);
		if (!i)
			return 0;
		if (emulated(*i)) {
			if (at == 0)
				return 0; // the entry itself is cheap
			return may_jump_into(d, code, size, boundaries) ? 0 : at;
		}
		if (!harmless(d, *i, keep))
			return 0;
		at += i->size;
		boundaries.push_back(at);
	}
	return 0;
}

uint64_t cheap_place(const std::string &path, uint64_t off, uint64_t size)
{
	if (size == 0)
		return 0;
	auto code = read_at(path, off, std::min<uint64_t>(size, 1 << 16));
	return code.empty() ? 0 : probe_place(code.data(), code.size(), reg_bit(RDI));
}

bool spin_lock_layout(const std::string &path, uint64_t off)
{
	auto b = read_at(path, off, 8);
	return b.size() == 8 && b[0] == 0xf0 && b[1] == 0xff && b[2] == 0x0f && b[3] == 0x75 && b[5] == 0x31 &&
	       b[6] == 0xc0 && b[7] == 0xc3;
}

bool first_insn_locked(const std::string &path, uint64_t off)
{
	auto b = read_at(path, off, 16);
	if (b.empty())
		return false;
	decoder d;
	const cs_insn *i = d.ok() ? d.at(b.data(), b.size(), 0) : nullptr;
	return i ? i->detail->x86.prefix[0] == X86_PREFIX_LOCK : b[0] == 0xf0;
}

} // namespace procimage::lock

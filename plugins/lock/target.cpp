// SPDX-License-Identifier: Apache-2.0
#include "target.hpp"

#include <gelf.h>
#include <libelf.h>
#include <linux/bpf.h>
#include <sys/syscall.h>

#include <procimage/bpf.hpp>

#include <algorithm>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <unistd.h>

namespace procimage::lock {

namespace sdk = procimage::sdk;

// ------------------------------------------------------------------ ELF symbols


// File offsets of the named functions defined in an ELF file. For a name with several
// versions (pthread_cond_wait@GLIBC_2.2.5 and @@GLIBC_2.3.2), the default version wins: that
// is what a program linked today calls.
std::map<std::string, uint64_t> elf_function_offsets(const std::string &path, const std::set<std::string> &names,
						    elf_extra *extra)
{
	std::map<std::string, uint64_t> out;
	if (elf_version(EV_CURRENT) == EV_NONE)
		throw std::runtime_error("libelf: " + std::string(elf_errmsg(-1)));
	int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		throw std::runtime_error("cannot open " + path + ": " + sdk::errno_text(errno));
	Elf *elf = elf_begin(fd, ELF_C_READ, nullptr);
	if (!elf) {
		close(fd);
		throw std::runtime_error(path + ": not an ELF file: " + elf_errmsg(-1));
	}
	if (extra) {
		GElf_Ehdr eh;
		extra->x86_64 = gelf_getehdr(elf, &eh) && eh.e_machine == EM_X86_64;
	}
	std::vector<GElf_Phdr> loads;
	size_t nph = 0;
	elf_getphdrnum(elf, &nph);
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD && (ph.p_flags & PF_X))
			loads.push_back(ph);
	}
	auto file_offset = [&](uint64_t vaddr) -> std::optional<uint64_t> {
		for (const auto &ph : loads)
			if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_memsz)
				return vaddr - ph.p_vaddr + ph.p_offset;
		return std::nullopt;
	};
	std::map<std::string, bool> is_default; // name -> the offset kept is the default version
	Elf_Scn *scn = nullptr;
	while ((scn = elf_nextscn(elf, scn)) != nullptr) {
		GElf_Shdr sh;
		if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_DYNSYM && sh.sh_type != SHT_SYMTAB))
			continue;
		Elf_Data *data = elf_getdata(scn, nullptr);
		if (!data || !sh.sh_entsize)
			continue;
		// the version of each dynamic symbol (bit 15: hidden, i.e. not the default version)
		Elf_Data *versym = nullptr;
		if (sh.sh_type == SHT_DYNSYM) {
			Elf_Scn *v = nullptr;
			while ((v = elf_nextscn(elf, v)) != nullptr) {
				GElf_Shdr vs;
				if (gelf_getshdr(v, &vs) && vs.sh_type == SHT_GNU_versym)
					versym = elf_getdata(v, nullptr);
			}
		}
		size_t n = sh.sh_size / sh.sh_entsize;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym sym;
			if (!gelf_getsym(data, static_cast<int>(i), &sym))
				continue;
			if (GELF_ST_TYPE(sym.st_info) != STT_FUNC && GELF_ST_TYPE(sym.st_info) != STT_GNU_IFUNC)
				continue;
			if (sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			const char *name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (!name || !names.count(name))
				continue;
			bool def = true;
			if (versym) {
				GElf_Versym vv;
				if (gelf_getversym(versym, static_cast<int>(i), &vv))
					def = !(vv & 0x8000);
			}
			auto off = file_offset(sym.st_value);
			if (!off)
				continue;
			auto it = out.find(name);
			if (it == out.end() || (def && !is_default[name])) {
				out[name] = *off;
				is_default[name] = def;
				if (extra)
					extra->sizes[name] = sym.st_size;
			}
		}
	}
	elf_end(elf);
	close(fd);
	return out;
}

// ------------------------------------------------------------------ target processes


bool is_libc_name(const std::string &base, bool &pthread)
{
	pthread = base.rfind("libpthread.so", 0) == 0 || base.rfind("libpthread-", 0) == 0;
	return pthread || base.rfind("libc.so", 0) == 0 || base.rfind("libc-2.", 0) == 0 ||
	       base.rfind("libc.musl", 0) == 0 || base.rfind("ld-musl", 0) == 0;
}

// libc and libpthread as mapped by a process; nullopt when the process is gone.
std::optional<std::vector<mapped_lib>> process_libs(uint32_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
	if (!in)
		return std::nullopt;
	std::vector<mapped_lib> libs;
	std::string line;
	while (std::getline(in, line)) {
		std::istringstream ls(line);
		std::string range, perms, off, dev, path;
		uint64_t ino = 0;
		if (!(ls >> range >> perms >> off >> dev >> ino))
			continue;
		std::getline(ls, path);
		path.erase(0, path.find_first_not_of(' '));
		if (path.empty() || path[0] != '/' || ino == 0)
			continue;
		bool deleted = false;
		const std::string del = " (deleted)";
		if (path.size() > del.size() && path.compare(path.size() - del.size(), del.size(), del) == 0) {
			path.resize(path.size() - del.size());
			deleted = true;
		}
		std::string base = path.substr(path.rfind('/') + 1);
		bool pthread = false;
		if (!is_libc_name(base, pthread))
			continue;
		unsigned maj = 0, min = 0;
		std::sscanf(dev.c_str(), "%x:%x", &maj, &min);
		uint64_t devno = (static_cast<uint64_t>(maj) << 32) | min;
		if (std::any_of(libs.begin(), libs.end(), [&](const mapped_lib &l) { return l.ino == ino && l.dev == devno; }))
			continue;
		mapped_lib l;
		l.path = path;
		// the file as the process sees it (its own mount namespace), or the mapping itself when
		// the file was replaced since
		l.open_path = deleted ? "/proc/" + std::to_string(pid) + "/map_files/" + range
				      : "/proc/" + std::to_string(pid) + "/root" + path;
		l.dev = devno;
		l.ino = ino;
		l.pthread = pthread;
		libs.push_back(l);
	}
	return libs;
}


constexpr uint32_t BPF_F_UPROBE_MULTI_RETURN_ = 1;

// One uprobe_multi link: prog at every offset of path, for process pid only. The libbpf this
// project builds with predates the link type, so the attribute is laid out here (the layout
// of union bpf_attr's link_create.uprobe_multi). Returns the link fd or -errno.
int attach_multi(bpf_program *prog, const std::string &path, uint32_t pid, const std::vector<uint64_t> &offsets,
		 const std::vector<uint64_t> &cookies, bool ret)
{
	if (offsets.empty())
		return -ENOENT;
	struct {
		uint32_t prog_fd;
		uint32_t target_fd;
		uint32_t attach_type;
		uint32_t flags;
		uint64_t path;
		uint64_t offsets;
		uint64_t ref_ctr_offsets;
		uint64_t cookies;
		uint32_t cnt;
		uint32_t flags2;
		uint32_t pid;
		uint32_t pad;
		uint8_t rest[64]; // the rest of union bpf_attr stays zero
	} attr{};
	attr.prog_fd = static_cast<uint32_t>(bpf_program__fd(prog));
	attr.attach_type = BPF_TRACE_UPROBE_MULTI_;
	attr.path = reinterpret_cast<uint64_t>(path.c_str());
	attr.offsets = reinterpret_cast<uint64_t>(offsets.data());
	attr.cookies = reinterpret_cast<uint64_t>(cookies.data());
	attr.cnt = static_cast<uint32_t>(offsets.size());
	attr.flags2 = ret ? BPF_F_UPROBE_MULTI_RETURN_ : 0;
	attr.pid = pid;
	long fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof attr);
	return fd < 0 ? -errno : static_cast<int>(fd);
}

uint32_t tgid_of(uint32_t tid)
{
	std::ifstream in("/proc/" + std::to_string(tid) + "/status");
	std::string line;
	while (std::getline(in, line))
		if (line.rfind("Tgid:", 0) == 0)
			return static_cast<uint32_t>(std::stoul(line.substr(5)));
	return 0;
}

std::string proc_comm(uint32_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/comm");
	std::string s;
	std::getline(in, s);
	return s;
}

// What /proc/<pid>/stat says of a process: its state letter and its start time (field 22,
// clock ticks since boot; with the pid it names one process across pid reuse). nullopt when
// it is gone.
std::optional<proc_stat> read_proc_stat(uint32_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string line;
	if (!std::getline(in, line))
		return std::nullopt;
	auto paren = line.rfind(')');
	if (paren == std::string::npos || paren + 2 >= line.size())
		return std::nullopt;
	proc_stat ps;
	ps.state = line[paren + 2];
	std::istringstream rest(line.substr(paren + 2));
	std::string field;
	for (int i = 3; i <= 22 && rest >> field; i++)
		if (i == 22)
			ps.start_ticks = std::strtoull(field.c_str(), nullptr, 10);
	return ps;
}

// The process has exited (gone, a zombie, or past the release of its memory), or its pid now
// names another process (start_ticks given and different): there is nothing left to probe,
// and a failed attach to it is no error.
bool process_ended(uint32_t pid, uint64_t start_ticks)
{
	auto ps = read_proc_stat(pid);
	if (!ps || ps->state == 'Z' || ps->state == 'X' || (start_ticks && ps->start_ticks != start_ticks))
		return true;
	std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
	return maps.peek() == std::ifstream::traits_type::eof();
}

} // namespace procimage::lock

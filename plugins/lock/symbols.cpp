// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: the lock functions in a library's ELF symbol tables (see symbols.hpp).
#include "symbols.hpp"

#include <procimage/bpf.hpp>

#include <gelf.h>
#include <libelf.h>

#include <fcntl.h>
#include <optional>
#include <stdexcept>
#include <unistd.h>
#include <vector>

namespace procimage::lock {

namespace sdk = procimage::sdk;

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

} // namespace procimage::lock

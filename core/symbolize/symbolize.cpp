// SPDX-License-Identifier: Apache-2.0
#include "symbolize.hpp"
#include <procimage/sdk.hpp>

#include <dwarf.h>
#include <elfutils/libdwfl.h>
#include <gelf.h>

#include <cxxabi.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

namespace procimage::symbolize {

namespace {

std::string hex(uint64_t v)
{
	char b[24];
	std::snprintf(b, sizeof b, "0x%" PRIx64, v);
	return b;
}

std::string demangle(const char *name)
{
	if (std::strncmp(name, "_Z", 2) != 0)
		return name;
	int status = 0;
	char *d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
	if (status != 0 || !d)
		return name;
	std::string s(d);
	std::free(d);
	return s;
}

std::string base_name(const std::string &path)
{
	auto slash = path.rfind('/');
	return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string read_text(const std::string &path)
{
	std::ifstream in(path);
	if (!in)
		return {};
	std::ostringstream s;
	s << in.rdbuf();
	return s.str();
}

// The start of a process, ns since boot, from /proc/PID/stat (in clock ticks: 10 ms steps).

bool exists(const std::string &path)
{
	return access(path.c_str(), R_OK) == 0;
}

// libdw's standard search for a module's separate debug file, without its last resort when
// nothing was found locally: asking a debuginfod server. That resort loads libdebuginfod and
// its curl, GnuTLS and OpenSSL (about 4 MB of memory for the rest of the run) even when no
// server is configured, which is the common case. So: with DEBUGINFOD_URLS set, libdw's search
// as it is; without it, the build-id directory, and libdw's search only when one of the places
// it looks in by .gnu_debuglink name holds that file.
int find_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname, Dwarf_Addr base, const char *file_name,
		   const char *debuglink_file, GElf_Word debuglink_crc, char **debuginfo_file_name)
{
	const char *urls = std::getenv("DEBUGINFOD_URLS");
	if (urls && *urls)
		return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
						    debuglink_crc, debuginfo_file_name);
	int fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
					      debuglink_crc, debuginfo_file_name);
	if (fd >= 0 || !file_name)
		return fd;
	std::string dir(file_name);
	auto slash = dir.rfind('/');
	dir = slash == std::string::npos ? std::string(".") : dir.substr(0, slash);
	std::string link = debuglink_file ? debuglink_file : base_name(file_name) + ".debug";
	for (const std::string &candidate :
	     {dir + "/" + link, dir + "/.debug/" + link, "/usr/lib/debug" + dir + "/" + link})
		if (exists(candidate))
			return dwfl_standard_find_debuginfo(mod, userdata, modname, base, file_name, debuglink_file,
							    debuglink_crc, debuginfo_file_name);
	return -1;
}

const Dwfl_Callbacks offline_callbacks = {
	dwfl_build_id_find_elf,
	find_debuginfo,
	dwfl_offline_section_address,
	nullptr,
};

} // namespace

std::string frame_text(const symbol &s, uint64_t addr)
{
	if (!s.name.empty())
		return s.name + "+" + hex(s.offset);
	if (!s.module.empty())
		return "[" + s.module + "]+" + hex(s.offset);
	return hex(addr);
}

// ------------------------------------------------------------------ kernel

bool kernel_symbols::load(const std::string &path)
{
	syms_.clear();
	names_.clear();
	std::ifstream in(path);
	std::string line;
	while (std::getline(in, line)) {
		// "ffffffff81000000 T _stext" or "… t name\t[module]"
		char *end = nullptr;
		uint64_t a = std::strtoull(line.c_str(), &end, 16);
		if (!end || *end != ' ' || !a)
			continue;
		char type = end[1];
		if (type != 't' && type != 'T' && type != 'w' && type != 'W')
			continue;
		const char *name = end + 3;
		if (end[2] != ' ' || !*name)
			continue;
		const char *tab = std::strchr(name, '\t');
		size_t len = tab ? static_cast<size_t>(tab - name) : std::strlen(name);
		if (names_.size() + len > UINT32_MAX)
			break; // 4 GiB of names: no kernel has that many
		syms_.push_back({a, static_cast<uint32_t>(names_.size()), static_cast<uint32_t>(len)});
		names_.append(name, len);
	}
	// kallsyms is mostly in address order, modules not always: sort, and keep the first name
	// listed for an address that has several (aliases)
	std::stable_sort(syms_.begin(), syms_.end(), [](const entry &x, const entry &y) { return x.addr < y.addr; });
	syms_.erase(std::unique(syms_.begin(), syms_.end(), [](const entry &x, const entry &y) { return x.addr == y.addr; }),
		    syms_.end());
	syms_.shrink_to_fit();
	names_.shrink_to_fit();
	return !syms_.empty();
}

symbol kernel_symbols::resolve(uint64_t addr) const
{
	symbol s;
	// the last symbol at or below addr
	auto it = std::upper_bound(syms_.begin(), syms_.end(), addr, [](uint64_t a, const entry &e) { return a < e.addr; });
	if (it == syms_.begin())
		return s;
	--it;
	s.name.assign(names_, it->name_off, it->name_len);
	s.offset = addr - it->addr;
	s.module = "[kernel]";
	return s;
}

// ------------------------------------------------------------------ ELF images

std::shared_ptr<elf_image> elf_image::open(const std::string &path, const std::string &display_name,
					   std::string *err)
{
	std::shared_ptr<elf_image> img(new elf_image());
	img->name_ = display_name;
	Dwfl *d = dwfl_begin(&offline_callbacks);
	if (!d) {
		if (err)
			*err = dwfl_errmsg(-1);
		return nullptr;
	}
	img->dwfl_ = d;
	// base 0, add_p_vaddr: the module's addresses are the file's own virtual addresses (bias
	// 0), for executables and shared objects alike.
	dwfl_report_begin(d);
	Dwfl_Module *m = dwfl_report_elf(d, display_name.c_str(), path.c_str(), -1, 0, true);
	dwfl_report_end(d, nullptr, nullptr);
	if (!m) {
		if (err)
			*err = path + ": " + dwfl_errmsg(-1);
		return nullptr;
	}
	img->module_ = m;
	GElf_Addr bias = 0;
	Elf *elf = dwfl_module_getelf(m, &bias);
	size_t nph = 0;
	if (!elf || elf_getphdrnum(elf, &nph) != 0) {
		if (err)
			*err = path + ": no program headers";
		return nullptr;
	}
	for (size_t i = 0; i < nph; i++) {
		GElf_Phdr ph;
		if (gelf_getphdr(elf, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD)
			img->loads_.push_back({ph.p_offset, ph.p_filesz, ph.p_vaddr, ph.p_memsz});
	}
	const unsigned char *bits = nullptr;
	GElf_Addr vaddr = 0;
	int n = dwfl_module_build_id(m, &bits, &vaddr);
	for (int i = 0; i < n; i++) {
		char b[3];
		std::snprintf(b, sizeof b, "%02x", bits[i]);
		img->build_id_ += b;
	}
	// Load the symbol table now, while the file is surely there.
	dwfl_module_getsymtab(m);
	return img;
}

elf_image::~elf_image()
{
	if (dwfl_)
		dwfl_end(static_cast<Dwfl *>(dwfl_));
}

symbol elf_image::resolve_offset(uint64_t file_offset) const
{
	for (const auto &s : loads_)
		if (file_offset >= s.offset && file_offset < s.offset + s.filesz) {
			symbol r = resolve_vaddr(file_offset - s.offset + s.vaddr);
			if (r.name.empty())
				r.offset = file_offset;
			return r;
		}
	symbol r;
	r.module = name_;
	r.offset = file_offset;
	return r;
}

bool elf_image::vaddr_at_offset(uint64_t file_offset, uint64_t &vaddr) const
{
	for (const auto &s : loads_)
		if (file_offset >= (s.offset & ~uint64_t{0xfff}) && file_offset < s.offset + s.filesz) {
			vaddr = file_offset - s.offset + s.vaddr;
			return true;
		}
	return false;
}

bool elf_image::maps_vaddr(uint64_t vaddr) const
{
	for (const auto &s : loads_)
		if (vaddr >= s.vaddr && vaddr < s.vaddr + s.memsz)
			return true;
	return false;
}

symbol elf_image::resolve_object(uint64_t vaddr) const
{
	// The variables of the file, read once: every STT_OBJECT symbol with its extent, by
	// address. (libdwfl's nearest-symbol lookup may answer a global symbol below the address,
	// __bss_start, rather than the local variable at it.)
	if (!objects_loaded_) {
		objects_loaded_ = true;
		auto *m = static_cast<Dwfl_Module *>(module_);
		int n = dwfl_module_getsymtab(m);
		for (int i = 1; i < n; i++) {
			GElf_Sym sym;
			GElf_Addr value = 0;
			const char *name = dwfl_module_getsym_info(m, i, &sym, &value, nullptr, nullptr, nullptr);
			if (!name || !*name || GELF_ST_TYPE(sym.st_info) != STT_OBJECT || sym.st_shndx == SHN_UNDEF)
				continue;
			const char *at = std::strchr(name + 1, '@');
			objects_.push_back({value, std::max<uint64_t>(sym.st_size, 1), at ? std::string(name, at) : name,
					    GELF_ST_BIND(sym.st_info) != STB_LOCAL});
		}
		// by address; of names for one address (aliases), the one looked at first below comes
		// last: the largest, then a global one (_rtld_global rather than _rtld_local)
		std::sort(objects_.begin(), objects_.end(), [](const object &x, const object &y) {
			if (x.addr != y.addr)
				return x.addr < y.addr;
			if (x.size != y.size)
				return x.size < y.size;
			return x.global < y.global;
		});
	}
	symbol r;
	r.module = name_;
	r.offset = vaddr;
	// the last variable starting at or below the address, then back over those that end before it
	auto it = std::upper_bound(objects_.begin(), objects_.end(), vaddr,
				   [](uint64_t v, const object &o) { return v < o.addr; });
	while (it != objects_.begin()) {
		--it;
		if (vaddr < it->addr + it->size) {
			r.name = demangle(it->name.c_str());
			r.offset = vaddr - it->addr;
			return r;
		}
		if (vaddr - it->addr > (1u << 20)) // (no variable spans a megabyte before it)
			break;
	}
	return r;
}

symbol elf_image::resolve_vaddr(uint64_t vaddr) const
{
	symbol r;
	r.module = name_;
	r.offset = vaddr;
	auto *m = static_cast<Dwfl_Module *>(module_);
	GElf_Off off = 0;
	GElf_Sym sym;
	const char *name = dwfl_module_addrinfo(m, vaddr, &off, &sym, nullptr, nullptr, nullptr);
	if (name && *name) {
		// "clock_gettime@@GLIBC_2.17": the dynamic symbol's version is no part of the function
		const char *at = std::strchr(name + 1, '@');
		r.name = demangle(at ? std::string(name, at).c_str() : name);
		r.offset = off;
		return r;
	}
	// No ELF symbol covers it (a stripped file whose debug file has DWARF only): the innermost
	// function DWARF knows.
	Dwarf_Addr bias = 0;
	Dwarf_Die *cu = dwfl_module_addrdie(m, vaddr, &bias);
	if (!cu)
		return r;
	Dwarf_Die *scopes = nullptr;
	int n = dwarf_getscopes(cu, vaddr - bias, &scopes);
	for (int i = 0; i < n; i++) {
		int tag = dwarf_tag(&scopes[i]);
		if (tag != DW_TAG_subprogram && tag != DW_TAG_inlined_subroutine)
			continue;
		const char *dn = dwarf_diename(&scopes[i]);
		Dwarf_Attribute a;
		if (const char *linkage = dwarf_formstring(dwarf_attr_integrate(&scopes[i], DW_AT_linkage_name, &a)))
			dn = linkage;
		if (!dn)
			continue;
		Dwarf_Addr lo = 0;
		r.name = demangle(dn);
		r.offset = dwarf_lowpc(&scopes[i], &lo) == 0 && vaddr - bias >= lo ? vaddr - bias - lo : 0;
		break;
	}
	std::free(scopes);
	return r;
}

// ------------------------------------------------------------------ process mappings

std::vector<mapping> parse_maps(const std::string &text, bool executable_only)
{
	std::vector<mapping> out;
	std::istringstream in(text);
	std::string line;
	while (std::getline(in, line)) {
		// start-end perms offset major:minor inode   path
		unsigned long long start, end, offset, inode;
		unsigned major, minor;
		char perms[8];
		int pos = 0;
		if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &offset, &major,
				&minor, &inode, &pos) < 7)
			continue;
		if (executable_only && (std::strlen(perms) < 3 || perms[2] != 'x'))
			continue;
		mapping m;
		m.start = start;
		m.end = end;
		m.offset = offset;
		m.dev = makedev(major, minor);
		m.inode = inode;
		if (pos > 0 && static_cast<size_t>(pos) <= line.size())
			m.path = line.substr(static_cast<size_t>(pos));
		out.push_back(std::move(m));
	}
	return out;
}

mapping *symbolizer::find(std::vector<mapping> &maps, uint64_t addr)
{
	for (auto &m : maps)
		if (addr >= m.start && addr < m.end)
			return &m;
	return nullptr;
}

symbolizer::~symbolizer()
{
	for (const auto &[key, fd] : held_)
		close(fd);
}

// The pid still names the process that started at start_ns (0: any): its start time, in clock
// ticks, agrees.
bool symbolizer::same_process(uint32_t pid, uint64_t start_ns) const
{
	return sdk::same_process(pid, start_ns, proc_);
}

bool symbolizer::read_maps(uint32_t pid, uint64_t start_ns, std::vector<mapping> &out)
{
	std::string dir = proc_ + "/" + std::to_string(pid);
	std::string text = read_text(dir + "/maps");
	if (text.empty() || !same_process(pid, start_ns))
		return false;
	out = parse_maps(text);
	for (auto &m : out)
		hold(pid, m);
	stats_.captures++;
	return true;
}

// Keep a binary of the process open until it is parsed: through the mapping itself (a deleted
// or replaced file, another mount namespace), else through the process's root.
void symbolizer::hold(uint32_t pid, const mapping &m)
{
	// enough for every library of many processes; past it, the file is opened by path later
	constexpr size_t max_held = 512;
	if (m.path.empty() || m.path[0] != '/' || !m.inode || held_.size() >= max_held)
		return;
	auto key = std::make_pair(m.dev, m.inode);
	if (images_.count(key) || failed_.count(key) || held_.count(key))
		return;
	char range[64];
	std::snprintf(range, sizeof range, "%" PRIx64 "-%" PRIx64, m.start, m.end);
	for (const auto &p : {proc_ + "/" + std::to_string(pid) + "/map_files/" + range,
			      proc_ + "/" + std::to_string(pid) + "/root" + m.path}) {
		int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			held_[key] = fd;
			stats_.held++;
			return;
		}
	}
}

std::shared_ptr<elf_image> symbolizer::vdso_image()
{
	if (!vdso_tried_) {
		vdso_tried_ = true;
		// Every process's vDSO is the kernel's one image: ours, copied into a memory file.
		auto *ehdr = reinterpret_cast<const unsigned char *>(getauxval(AT_SYSINFO_EHDR));
		if (ehdr && std::memcmp(ehdr, ELFMAG, SELFMAG) == 0) {
			const auto *eh = reinterpret_cast<const Elf64_Ehdr *>(ehdr);
			size_t size = eh->e_shoff + static_cast<size_t>(eh->e_shnum) * eh->e_shentsize;
			int fd = memfd_create("vdso", MFD_CLOEXEC);
			if (fd >= 0) {
				if (size < (1u << 20) && write(fd, ehdr, size) == static_cast<ssize_t>(size)) {
					std::string err;
					vdso_ = elf_image::open("/proc/self/fd/" + std::to_string(fd), "[vdso]", &err);
				}
				close(fd);
			}
		}
	}
	return vdso_;
}

// The parsed binary behind a mapping: cached, else from the file held at the capture, else by
// its path.
std::shared_ptr<elf_image> symbolizer::image_for(const mapping &m)
{
	if (m.path == "[vdso]")
		return vdso_image();
	if (m.path.empty() || m.path[0] != '/' || !m.inode)
		return nullptr;
	auto key = std::make_pair(m.dev, m.inode);
	if (auto it = images_.find(key); it != images_.end())
		return it->second;
	if (failed_.count(key))
		return nullptr;
	std::string display = base_name(m.path);
	const std::string deleted = " (deleted)";
	if (display.size() > deleted.size() && display.compare(display.size() - deleted.size(), deleted.size(), deleted) == 0)
		display.resize(display.size() - deleted.size());
	std::string err, path = m.path;
	int fd = -1;
	if (auto h = held_.find(key); h != held_.end()) {
		fd = h->second;
		held_.erase(h);
		path = "/proc/self/fd/" + std::to_string(fd);
	}
	std::shared_ptr<elf_image> img;
	if (fd >= 0 || access(path.c_str(), R_OK) == 0)
		img = elf_image::open(path, display, &err);
	if (fd >= 0)
		close(fd);
	if (img) {
		stats_.images++;
		images_[key] = img;
	} else {
		stats_.image_failures++;
		failed_[key] = err.empty() ? "cannot read " + m.path : err;
	}
	return img;
}

bool symbolizer::capture(uint32_t pid, uint64_t start_ns, uint64_t exec_id)
{
	std::vector<mapping> maps;
	if (!read_maps(pid, start_ns, maps)) {
		stats_.gone++;
		return false;
	}
	auto &p = procs_[{pid, start_ns, exec_id}];
	p.maps = std::move(maps);
	p.seq = ++seq_;
	return true;
}

bool symbolizer::known(uint32_t pid, uint64_t start_ns, uint64_t exec_id) const
{
	return procs_.count({pid, start_ns, exec_id}) > 0;
}

symbol symbolizer::resolve_user(uint32_t pid, uint64_t start_ns, uint64_t exec_id, uint64_t addr)
{
	proc_key key{pid, start_ns, exec_id};
	auto it = procs_.find(key);
	mapping *m = it != procs_.end() ? find(it->second.maps, addr) : nullptr;
	if (!m && capture(pid, start_ns, exec_id)) {
		it = procs_.find(key);
		m = find(it->second.maps, addr);
	}
	if (!m)
		return {};
	uint64_t file_offset = addr - m->start + m->offset;
	if (!m->image)
		m->image = image_for(*m);
	if (!m->image) {
		symbol s;
		s.module = m->path.empty() ? "" : base_name(m->path);
		s.offset = file_offset;
		return s;
	}
	return m->image->resolve_offset(file_offset);
}

bool symbolizer::read_data_maps(uint32_t pid, uint64_t start_ns)
{
	auto &p = data_procs_[{pid, start_ns}];
	std::string text = read_text(proc_ + "/" + std::to_string(pid) + "/maps");
	if (text.empty() || !same_process(pid, start_ns))
		return false;
	if (text == p.maps_text)
		return false;
	p.maps_text = std::move(text);
	p.files.clear();
	std::set<std::pair<uint64_t, uint64_t>> seen;
	for (auto &m : parse_maps(p.maps_text, false)) {
		if (m.path.empty() || m.path[0] != '/' || !m.inode || !seen.emplace(m.dev, m.inode).second)
			continue; // (each file once: its first mapping, the one at its lowest offset)
		hold(pid, m); // (then a file replaced or a process ended meanwhile still resolves)
		p.files.push_back({std::move(m), 0, false});
	}
	return true;
}

void symbolizer::capture_data(uint32_t pid, uint64_t start_ns)
{
	read_data_maps(pid, start_ns);
}

symbol symbolizer::resolve_data(uint32_t pid, uint64_t start_ns, uint64_t addr)
{
	auto lookup = [&]() -> std::optional<symbol> {
		auto &p = data_procs_[{pid, start_ns}];
		for (auto &f : p.files) {
			if (!f.map.image) {
				f.map.image = image_for(f.map);
				if (!f.map.image)
					continue;
				uint64_t v = 0;
				f.bias_known = f.map.image->vaddr_at_offset(f.map.offset, v);
				f.bias = f.map.start - v;
			}
			if (!f.bias_known || !f.map.image->maps_vaddr(addr - f.bias))
				continue;
			symbol s = f.map.image->resolve_object(addr - f.bias);
			if (!s.name.empty())
				return s;
		}
		return std::nullopt;
	};
	if (auto s = lookup())
		return *s;
	// The first time, or the maps changed since (a library loaded, an exec): read them again.
	// (The caller keeps what it found, and asks again for an address without a name only now
	// and then: heap locks do not make this read the maps at every record.)
	if (read_data_maps(pid, start_ns))
		if (auto s = lookup())
			return *s;
	return {};
}

std::vector<std::string> symbolizer::user_stack(uint32_t pid, uint64_t start_ns, uint64_t exec_id, const uint64_t *ips,
						size_t n)
{
	std::vector<std::string> out;
	out.reserve(n);
	bool recaptured = false;
	for (size_t i = 0; i < n; i++) {
		// one fresh look at the mappings per stack at most
		proc_key key{pid, start_ns, exec_id};
		auto it = procs_.find(key);
		symbol s;
		if (it != procs_.end() && find(it->second.maps, ips[i]))
			s = resolve_user(pid, start_ns, exec_id, ips[i]);
		else if (!recaptured) {
			recaptured = true;
			s = resolve_user(pid, start_ns, exec_id, ips[i]);
		}
		out.push_back(frame_text(s, ips[i]));
	}
	return out;
}

bool symbolizer::load_kernel()
{
	if (!kernel_tried_) {
		kernel_tried_ = true;
		kernel_.load();
	}
	return kernel_.size() > 0;
}

std::vector<std::string> symbolizer::kernel_stack(const uint64_t *ips, size_t n) const
{
	std::vector<std::string> out;
	out.reserve(n);
	for (size_t i = 0; i < n; i++)
		out.push_back(frame_text(kernel_.resolve(ips[i]), ips[i]));
	return out;
}

void symbolizer::forget(uint32_t pid)
{
	for (auto it = procs_.lower_bound({pid, 0, 0}); it != procs_.end() && std::get<0>(it->first) == pid;)
		it = procs_.erase(it);
	for (auto it = data_procs_.lower_bound({pid, 0}); it != data_procs_.end() && it->first.first == pid;)
		it = data_procs_.erase(it);
}

void symbolizer::trim(size_t max_processes)
{
	while (procs_.size() > max_processes) {
		auto oldest = procs_.begin();
		for (auto it = procs_.begin(); it != procs_.end(); ++it)
			if (it->second.seq < oldest->second.seq)
				oldest = it;
		procs_.erase(oldest);
	}
	// (what resolve_data read is cheap to read again: past the bound, it all goes)
	if (data_procs_.size() > max_processes)
		data_procs_.clear();
}

} // namespace procimage::symbolize

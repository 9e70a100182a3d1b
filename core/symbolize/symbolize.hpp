// SPDX-License-Identifier: Apache-2.0
//
// Stack symbolization in user space, shared by the probes that take stacks (profile, keytime).
//
//  * kernel addresses: /proc/kallsyms, read once;
//  * user addresses: each process's executable mappings (/proc/PID/maps), read while the
//    process lives, and the ELF files behind them, opened through elfutils' libdwfl (the ELF
//    symbol tables, a separate debug file found by build-id, DWARF where the symbol tables have
//    nothing). An address becomes a file offset through its mapping (so PIE executables and
//    shared libraries resolve wherever they were loaded), then a virtual address of the file
//    through its PT_LOAD segments, then a symbol.
//
// One ELF image is opened and parsed once per binary (cached by device and inode), however many
// processes map it. Capturing a process is cheap: its mappings are read and each binary not yet
// known is held open (a file descriptor, so a deleted or replaced file and a process that has
// exited still resolve); the binary is parsed only when an address in it is first resolved. A
// capture that parsed every library at once could take long enough on a slow machine (a guest
// under emulation, its files over 9p) for the next short-lived process to exit before its own
// capture.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace procimage::symbolize {

// What one address resolved to.
struct symbol {
	std::string name;    // the function (C++ names demangled); empty when unknown
	uint64_t offset = 0; // from the start of the function (or of the module, when name is empty)
	std::string module;  // file base name ("libc.so.6"), "[vdso]", "[kernel]"; empty when unknown
};

// "name+0x1a" for a resolved address, "[module]+0x2a1b0" (offset in the file) for an address in
// a known module without a symbol, "0x7f12…" otherwise.
std::string frame_text(const symbol &s, uint64_t addr);

// Kernel symbols from /proc/kallsyms (text symbols only): ~200k of them, held as one array
// sorted by address (binary search) and one block of their names, so that a table this size
// costs two allocations rather than a tree node and a string each.
class kernel_symbols {
public:
	// false when the file cannot be read or shows only zero addresses (kptr_restrict)
	bool load(const std::string &path = "/proc/kallsyms");
	symbol resolve(uint64_t addr) const;
	size_t size() const { return syms_.size(); }

private:
	struct entry {
		uint64_t addr;
		uint32_t name_off, name_len; // in names_
	};
	std::vector<entry> syms_; // by address; one per address (the first name listed)
	std::string names_;
};

// One ELF file's symbols, looked up by offset in the file.
class elf_image {
public:
	// Opens PATH (a /proc/PID/map_files entry serves for a deleted file) and loads its symbol
	// table now. nullptr, with *err set, when it is no ELF file libdwfl can read.
	static std::shared_ptr<elf_image> open(const std::string &path, const std::string &display_name,
					       std::string *err);
	~elf_image();
	elf_image(const elf_image &) = delete;
	elf_image &operator=(const elf_image &) = delete;

	// The symbol at a file offset (what /proc/PID/maps gives: address - start + offset).
	symbol resolve_offset(uint64_t file_offset) const;
	// The symbol at a virtual address of the file (as in its symbol table).
	symbol resolve_vaddr(uint64_t vaddr) const;
	// The data object (an ELF STT_OBJECT symbol: a global or static variable) whose extent
	// holds a virtual address of the file; name empty when none does.
	symbol resolve_object(uint64_t vaddr) const;
	// The file's virtual address at a file offset, through the loadable segment that maps it
	// (an offset rounded down to its page counts too, as mappings start on pages); false when
	// no segment does.
	bool vaddr_at_offset(uint64_t file_offset, uint64_t &vaddr) const;
	// Whether a loadable segment covers a virtual address in memory (.bss included).
	bool maps_vaddr(uint64_t vaddr) const;
	const std::string &name() const { return name_; }
	const std::string &build_id() const { return build_id_; } // hex, empty if none

private:
	elf_image() = default;
	struct segment {
		uint64_t offset, filesz, vaddr, memsz;
	};
	struct object {
		uint64_t addr, size;
		std::string name;
		bool global;
	};
	mutable std::vector<object> objects_; // resolve_object's variables, by address
	mutable bool objects_loaded_ = false;
	void *dwfl_ = nullptr;   // Dwfl *
	void *module_ = nullptr; // Dwfl_Module *
	std::vector<segment> loads_;
	std::string name_, build_id_;
};

// One executable mapping of a process.
struct mapping {
	uint64_t start = 0, end = 0, offset = 0;
	uint64_t dev = 0, inode = 0;
	std::string path; // as /proc/PID/maps shows it ("[vdso]" for the vDSO)
	std::shared_ptr<elf_image> image; // opened when first needed; nullptr until then, or when
					  // the file could not be read
};

// Parse the text of /proc/PID/maps, keeping executable mappings only, or every mapping.
std::vector<mapping> parse_maps(const std::string &text, bool executable_only = true);

struct symbolizer_stats {
	uint64_t images = 0;        // ELF files opened
	uint64_t image_failures = 0;// files that could not be read as ELF
	uint64_t captures = 0;      // /proc/PID/maps read
	uint64_t gone = 0;          // processes that had exited before their maps could be read
	uint64_t held = 0;          // binaries held open at a capture, to be parsed when needed
};

// Symbolizes the stacks of many processes. A process is identified by its pid, its start time
// (ns since boot, the records' pid_start_ns: a reused pid is another process) and an exec
// generation (its mappings change at every exec; 0 when the caller does not track execs).
class symbolizer {
public:
	symbolizer() = default;
	~symbolizer();
	symbolizer(const symbolizer &) = delete;
	symbolizer &operator=(const symbolizer &) = delete;

	// Read the process's mappings now and hold open the binaries they map that are not known
	// yet (by device and inode); they are parsed at the first address resolved in them. Call it
	// as soon as a process is first seen: then its stacks resolve even after it exits. False
	// when the process is gone (or is another one by now).
	bool capture(uint32_t pid, uint64_t start_ns, uint64_t exec_id = 0);
	// Whether mappings were captured for this process.
	bool known(uint32_t pid, uint64_t start_ns, uint64_t exec_id = 0) const;
	// Resolve a user address of the process. An address outside every captured mapping makes
	// it read the mappings again, once per call, if the process still lives (a library loaded
	// since).
	symbol resolve_user(uint32_t pid, uint64_t start_ns, uint64_t exec_id, uint64_t addr);
	// frame_text() of each address, innermost first, as given.
	std::vector<std::string> user_stack(uint32_t pid, uint64_t start_ns, uint64_t exec_id, const uint64_t *ips,
					    size_t n);
	std::vector<std::string> kernel_stack(const uint64_t *ips, size_t n) const;
	// The variable of the process at a data address (a global or static object of its
	// executable or of a library: .data, .bss), from the ELF symbol tables; name empty for
	// the heap, the stack, or a stripped file. The process's file mappings are read at the
	// first call and read again when an address finds no name (if they changed): callers ask
	// again for such an address only now and then.
	symbol resolve_data(uint32_t pid, uint64_t start_ns, uint64_t addr);
	// Read the process's file mappings for resolve_data now, while it lives (a process that
	// ends before its records are read still has its variables named).
	void capture_data(uint32_t pid, uint64_t start_ns);

	// Kernel symbols are loaded on first need, or now.
	bool load_kernel();
	const kernel_symbols &kernel() const { return kernel_; }
	// Drop what is known of a process (after its exec, when execs are not tracked by id).
	void forget(uint32_t pid);
	// Keep at most max_processes snapshots (the oldest captured go first); images stay cached.
	void trim(size_t max_processes);
	const symbolizer_stats &stats() const { return stats_; }

	// Where /proc is (tests point it elsewhere).
	void set_proc_root(std::string root) { proc_ = std::move(root); }

private:
	using proc_key = std::tuple<uint32_t, uint64_t, uint64_t>;
	struct process {
		std::vector<mapping> maps;
		uint64_t seq = 0; // capture order, for trim()
	};
	bool same_process(uint32_t pid, uint64_t start_ns) const;
	bool read_maps(uint32_t pid, uint64_t start_ns, std::vector<mapping> &out);
	bool read_data_maps(uint32_t pid, uint64_t start_ns); // false: gone, or unchanged
	void hold(uint32_t pid, const mapping &m);
	std::shared_ptr<elf_image> image_for(const mapping &m);
	std::shared_ptr<elf_image> vdso_image();
	static mapping *find(std::vector<mapping> &maps, uint64_t addr);

	std::string proc_ = "/proc";
	std::map<proc_key, process> procs_;
	// resolve_data: each ELF file a process maps, and where it was loaded
	struct loaded {
		mapping map;        // its first mapping (image opened on first need)
		uint64_t bias = 0;  // memory address - the file's virtual address
		bool bias_known = false;
	};
	struct data_process {
		std::vector<loaded> files;
		std::string maps_text; // the /proc/PID/maps they come from
	};
	std::map<std::pair<uint32_t, uint64_t>, data_process> data_procs_;
	std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<elf_image>> images_; // (dev, inode)
	std::map<std::pair<uint64_t, uint64_t>, std::string> failed_;               // (dev, inode) → why
	std::map<std::pair<uint64_t, uint64_t>, int> held_; // (dev, inode) → an fd, until parsed
	std::shared_ptr<elf_image> vdso_;
	bool vdso_tried_ = false;
	kernel_symbols kernel_;
	bool kernel_tried_ = false;
	uint64_t seq_ = 0;
	symbolizer_stats stats_;
};

} // namespace procimage::symbolize

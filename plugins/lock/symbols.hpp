// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: where the lock functions are in a library, read from its ELF symbol
// tables (file offsets, the uprobes' unit).
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>

namespace procimage::lock {

// What elf_function_offsets() learns besides the offsets.
struct elf_extra {
	std::map<std::string, uint64_t> sizes; // st_size of the symbols found (0: unknown)
	bool x86_64 = false;
};

// File offsets of the named functions defined in an ELF file. For a name with several
// versions (pthread_cond_wait@GLIBC_2.2.5 and @@GLIBC_2.3.2), the default version wins: that
// is what a program linked today calls.
std::map<std::string, uint64_t> elf_function_offsets(const std::string &path, const std::set<std::string> &names,
						    elf_extra *extra = nullptr);

} // namespace procimage::lock

// SPDX-License-Identifier: Apache-2.0
//
// What the running kernel offers BPF programs, read from its own BTF (the enums and structs
// that appear with a feature), and what each built-in probe needs of it. One catalogue serves
// the probes (which refuse to load, naming what is missing and the first kernel that has it)
// and `procimage --features` (which reports it all).
#pragma once

#include <procimage/sdk.hpp>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdio>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/utsname.h>
#include <unistd.h>
#include <vector>

namespace procimage::sdk {

struct kernel_feature {
	const char *id;        // short name, as --features prints it
	const char *what;      // for a person
	const char *since;     // first mainline release that has it
	int btf_kind;          // BTF_KIND_ENUM: name is an enum's value; BTF_KIND_STRUCT: a struct;
			       // 0: nothing in BTF marks it, `test` finds it out
	const char *name;
	bool (*test)() = nullptr; // with btf_kind 0: a tiny test of the kernel, true when it has it
};

inline std::string kernel_release()
{
	utsname u{};
	return uname(&u) == 0 ? u.release : "unknown";
}

// True when the running kernel's release is at least MAJOR.MINOR.
inline bool kernel_release_at_least(int major, int minor)
{
	int a = 0, b = 0;
	if (std::sscanf(kernel_release().c_str(), "%d.%d", &a, &b) != 2)
		return false;
	return a > major || (a == major && b >= minor);
}

// Hash maps whose keys are longer than 512 bytes (MAX_BPF_STACK): until 5.11 htab_map_alloc_check
// refused them with E2BIG, since BPF programs then built their keys on the stack. Found by
// creating such a map; where procimage may not create maps (an unprivileged --features), the
// release decides.
inline bool test_large_hash_keys()
{
	static const bool yes = [] {
		int fd = bpf_map_create(BPF_MAP_TYPE_HASH, nullptr, 1024, 8, 1, nullptr);
		if (fd >= 0) {
			close(fd);
			return true;
		}
		if (fd == -E2BIG)
			return false;
		return kernel_release_at_least(5, 11);
	}();
	return yes;
}

inline constexpr kernel_feature KF_RINGBUF{"ringbuf", "the BPF ring buffer", "5.8", BTF_KIND_ENUM,
					   "BPF_MAP_TYPE_RINGBUF"};
inline constexpr kernel_feature KF_TASK_ITER{"task_iter", "BPF task iterators", "5.8", BTF_KIND_STRUCT,
					     "bpf_iter__task"};
inline constexpr kernel_feature KF_BPF_STATS{"bpf_stats", "BPF run-time statistics (BPF_ENABLE_STATS)", "5.8",
					     BTF_KIND_ENUM, "BPF_ENABLE_STATS"};
inline constexpr kernel_feature KF_TASK_STORAGE{"task_storage", "BPF task storage maps", "5.11", BTF_KIND_ENUM,
						"BPF_MAP_TYPE_TASK_STORAGE"};
inline constexpr kernel_feature KF_CURRENT_TASK_BTF{"current_task_btf", "the bpf_get_current_task_btf helper",
						    "5.11", BTF_KIND_ENUM, "BPF_FUNC_get_current_task_btf"};
inline constexpr kernel_feature KF_TASK_PT_REGS{"task_pt_regs", "the bpf_task_pt_regs helper", "5.15", BTF_KIND_ENUM,
						"BPF_FUNC_task_pt_regs"};
inline constexpr kernel_feature KF_ATTACH_COOKIE{"attach_cookie", "the bpf_get_attach_cookie helper", "5.15",
						 BTF_KIND_ENUM, "BPF_FUNC_get_attach_cookie"};
inline constexpr kernel_feature KF_BPF_LOOP{"bpf_loop", "the bpf_loop helper", "5.17", BTF_KIND_ENUM,
					    "BPF_FUNC_loop"};
inline constexpr kernel_feature KF_UPROBE_MULTI{"uprobe_multi", "multi-uprobe links", "6.6", BTF_KIND_STRUCT,
						"bpf_uprobe_multi_link"};
inline constexpr kernel_feature KF_LARGE_HASH_KEYS{"large_hash_keys", "hash map keys over 512 bytes", "5.11", 0, "",
						   test_large_hash_keys};

inline const std::vector<const kernel_feature *> &kernel_feature_catalogue()
{
	static const std::vector<const kernel_feature *> all{&KF_RINGBUF,      &KF_TASK_ITER,        &KF_BPF_STATS,
							      &KF_TASK_STORAGE, &KF_CURRENT_TASK_BTF, &KF_TASK_PT_REGS, &KF_ATTACH_COOKIE, &KF_BPF_LOOP,
							      &KF_UPROBE_MULTI,  &KF_LARGE_HASH_KEYS};
	return all;
}

namespace detail {
// This program's (or this plugin's) own parse, made when first asked for.
struct own_btf {
	std::mutex m;
	btf *b = nullptr;
	bool parsed = false;
	own_btf() = default;
	own_btf(const own_btf &) = delete;
	own_btf &operator=(const own_btf &) = delete;
	~own_btf() { btf__free(b); }
};
inline own_btf &own_kernel_btf()
{
	static own_btf o;
	return o;
}
} // namespace detail

// The running kernel's BTF (nullptr without CONFIG_DEBUG_INFO_BTF). Inside the create and load
// of a probe whose host has ABI 1.4 or later it is the host's (pi_host.kernel_btf): the 5-6 MB
// file is parsed once per run, not once per plugin. Elsewhere it is parsed here when first
// asked for, and kept until release_vmlinux_btf() or the end of the program (or the unloading
// of the plugin: its copy of this static goes with its .so).
inline const btf *vmlinux_btf()
{
	if (const btf *shared = detail::shared_kernel_btf())
		return shared;
	auto &o = detail::own_kernel_btf();
	std::lock_guard<std::mutex> lock(o.m);
	if (!o.parsed) {
		o.b = btf__load_vmlinux_btf();
		o.parsed = true;
	}
	return o.b;
}

// Free the parse vmlinux_btf() made (the host, once every probe is loaded: about 6 MB for the
// rest of the run). A later vmlinux_btf() parses again.
inline void release_vmlinux_btf()
{
	auto &o = detail::own_kernel_btf();
	std::lock_guard<std::mutex> lock(o.m);
	btf__free(o.b);
	o.b = nullptr;
	o.parsed = false;
}

inline bool btf_has_enum_value(const btf *b, const char *value)
{
	for (unsigned id = 1, n = btf__type_cnt(b); id < n; id++) {
		const btf_type *t = btf__type_by_id(b, id);
		if (!btf_is_enum(t))
			continue;
		const struct btf_enum *e = btf_enum(t);
		for (unsigned i = 0; i < btf_vlen(t); i++)
			if (std::string_view(btf__name_by_offset(b, e[i].name_off)) == value)
				return true;
	}
	return false;
}

inline bool kernel_has(const kernel_feature &f)
{
	if (f.btf_kind == 0)
		return f.test && f.test();
	const btf *b = vmlinux_btf();
	if (!b)
		return false;
	if (f.btf_kind == BTF_KIND_ENUM)
		return btf_has_enum_value(b, f.name);
	return btf__find_by_name_kind(b, f.name, f.btf_kind) > 0;
}

// What a built-in probe cannot load without (in the order they are checked). The host's own
// object needs kernel BTF and the ring buffer; so does every probe.
inline std::vector<const kernel_feature *> probe_requirements(std::string_view probe)
{
	if (probe == "syscall")
		return {&KF_RINGBUF, &KF_TASK_STORAGE};
	if (probe == "resource")
		return {&KF_RINGBUF, &KF_TASK_ITER, &KF_BPF_LOOP};
	return {&KF_RINGBUF};
}

// Empty when the kernel has everything PROBE needs, else one line: what is missing and from
// which release it exists.
inline std::string missing_for(std::string_view probe)
{
	if (!vmlinux_btf())
		return "needs the kernel's BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF=y, Linux 5.4 and later)";
	for (const auto *f : probe_requirements(probe))
		if (!kernel_has(*f))
			return std::string("needs ") + f->what + " (Linux " + f->since + " and later); this kernel, " +
			       kernel_release() + ", lacks it";
	return {};
}

// Throw the line above when PROBE cannot load here.
inline void require_kernel_for(std::string_view probe)
{
	if (auto m = missing_for(probe); !m.empty())
		throw std::runtime_error(m);
}

} // namespace procimage::sdk

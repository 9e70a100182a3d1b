// SPDX-License-Identifier: Apache-2.0
//
// libbpf helpers for probe plugins: reuse of the host's shared maps and RAII for the kernel
// objects a probe owns.
#pragma once

#include <procimage/bpf/common.h>
#include <procimage/kernel_features.hpp>
#include <procimage/sdk.hpp>

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <cstddef>
#include <initializer_list>
#include <utility>
#include <cstdint>
#include <cstdlib>
#include <unistd.h>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace procimage::sdk {

inline std::string errno_text(int err)
{
	if (err < 0)
		err = -err;
	return std::string(std::strerror(err));
}

// Point the object's pi_control / pi_targets maps at the host's; call between open and load.
inline void reuse_shared_maps(bpf_object *obj, const pi_host &host)
{
	struct {
		const char *name;
		int fd;
	} maps[] = {{"pi_control", host.control_map_fd}, {"pi_targets", host.targets_map_fd}};
	for (const auto &m : maps) {
		bpf_map *map = bpf_object__find_map_by_name(obj, m.name);
		if (!map)
			throw std::runtime_error(std::string("BPF object has no map ") + m.name +
						 " (include procimage/bpf/procimage.bpf.h)");
		int err = bpf_map__reuse_fd(map, m.fd);
		if (err)
			throw std::runtime_error(std::string("cannot reuse the host's ") + m.name +
						 " map: " + errno_text(err));
	}
}

static_assert(PI_COMM_FILTERS == PI_FILTER_COMMS, "the kernel checks every comm pattern pi_filters holds");

// The run's filters (pi_host.filters), or NULL: none, or a host older than ABI 1.3.
inline const pi_filters *host_filters(const pi_host &host)
{
	if (host.size < offsetof(pi_host, filters) + sizeof host.filters || !host.filters)
		return nullptr;
	if (host.filters->size < sizeof(pi_filters))
		return nullptr;
	return host.filters;
}

// The 16-byte value and mask the kernel compares a thread name with for one comm pattern (see
// pi_comm_match in procimage.bpf.h): an exact name covers its bytes and its NUL, a glob the
// bytes before its first wildcard (all of a "prefix*" glob; for any other the host checks the
// whole pattern on the records).
inline void comm_pattern_words(const char *pattern, bool glob, uint64_t val[2], uint64_t mask[2])
{
	unsigned char v[PI_COMM_LEN] = {}, m[PI_COMM_LEN] = {};
	size_t n = strnlen(pattern, PI_FILTER_COMM_LEN);
	size_t fixed = glob ? std::strcspn(pattern, "*?[\\") : n + 1; // an exact name: its NUL too
	if (fixed > n + 1)
		fixed = n + 1;
	if (fixed > PI_COMM_LEN)
		fixed = PI_COMM_LEN;
	for (size_t i = 0; i < fixed; i++) {
		v[i] = i < n ? static_cast<unsigned char>(pattern[i]) : 0;
		m[i] = 0xff;
	}
	std::memcpy(val, v, sizeof v);
	std::memcpy(mask, m, sizeof m);
}

// Does a glob need the host's user-space check (a wildcard other than one trailing '*')?
inline bool comm_glob_needs_host(const char *pattern)
{
	size_t n = strnlen(pattern, PI_FILTER_COMM_LEN);
	size_t fixed = std::strcspn(pattern, "*?[\\");
	return fixed < n && !(fixed == n - 1 && pattern[fixed] == '*');
}

// Write the host's settings into the rodata every probe has (procimage.bpf.h): its slot, the
// ring-buffer wakeup threshold (at most a quarter of the ring) and the run's common filters
// (comm, failures only, minimum duration; a host before ABI 1.3 gives none). Call between
// open and load.
template <typename Rodata> void set_common_rodata(Rodata *ro, const pi_host &host, uint64_t ringbuf_bytes)
{
	ro->pi_slot = host.slot;
	uint64_t w = host.wakeup_bytes;
	if (w > ringbuf_bytes / 4)
		w = ringbuf_bytes / 4;
	ro->pi_wakeup_bytes = w;
	const pi_filters *f = host_filters(host);
	if (!f)
		return;
	uint32_t n = f->n_comms < PI_COMM_FILTERS ? f->n_comms : PI_COMM_FILTERS;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t val[2], mask[2];
		comm_pattern_words(f->comm[i], (f->comm_glob >> i) & 1, val, mask);
		ro->pi_comm_val[2 * i] = val[0];
		ro->pi_comm_val[2 * i + 1] = val[1];
		ro->pi_comm_mask[2 * i] = mask[0];
		ro->pi_comm_mask[2 * i + 1] = mask[1];
	}
	ro->pi_comm_n = n;
	ro->pi_filter_failed = f->failed_only != 0;
	ro->pi_filter_min_ns = f->min_duration_ns;
}

// The fd of the probe's pi_lost counter map, for pi_probe_io.lost_map_fd.
inline int lost_map_fd(bpf_object *obj)
{
	bpf_map *map = bpf_object__find_map_by_name(obj, "pi_lost");
	return map ? bpf_map__fd(map) : -1;
}

// Names what the probe's own loss causes count (pi_count_lost_as(PI_LOST_PROBE + n) on the BPF
// side), for the host's warnings and records: "MAP: what was lost (the setting to raise)".
// The ring buffer's cause (PI_LOST_RINGBUF) is named by the host. A host older than ABI 1.1 has
// no room for the names and is told nothing.
inline void name_lost_causes(pi_probe_io &io, std::initializer_list<std::pair<uint32_t, const char *>> causes)
{
	if (io.size < offsetof(pi_probe_io, lost_causes) + sizeof io.lost_causes)
		return;
	for (const auto &[key, text] : causes)
		if (key >= PI_LOST_PROBE && key < PI_LOST_CAUSES)
			io.lost_causes[key] = text;
}

// Task storage maps exist from Linux 5.11. Where they do not (or PROCIMAGE_NO_TASK_STORAGE=1,
// which takes that path on any kernel so that the tests cover it), MAP, a task storage map,
// becomes a hash keyed by thread id with room for max_entries threads, and the answer is
// false: the BPF side must then take its hash path. Call between open and load.
inline bool task_storage_or_hash(bpf_map *map, uint32_t max_entries)
{
	const char *off = std::getenv("PROCIMAGE_NO_TASK_STORAGE");
	bool forced_off = off && std::strcmp(off, "1") == 0;
	if (!forced_off && kernel_has(KF_TASK_STORAGE)) // the catalogue --features reports from
		return true;
	bpf_map__set_type(map, BPF_MAP_TYPE_HASH);
	bpf_map__set_key_size(map, sizeof(uint32_t));
	bpf_map__set_max_entries(map, max_entries);
	return false;
}

// Delete every entry of a hash map (keys of key_size bytes). Entries added meanwhile by the
// kernel may survive; call it while the probe is detached.
inline void clear_map(int fd, size_t key_size)
{
	std::vector<char> key(key_size);
	while (bpf_map_get_next_key(fd, nullptr, key.data()) == 0)
		if (bpf_map_delete_elem(fd, key.data()) != 0)
			throw std::runtime_error("cannot clear a BPF map: " + errno_text(errno));
}

// Run a BPF iterator once and return everything it wrote. A read error is an error, never a
// short result.
inline std::vector<char> read_iter(bpf_link *iter)
{
	int fd = bpf_iter_create(bpf_link__fd(iter));
	if (fd < 0)
		throw std::runtime_error("cannot start the BPF iterator: " + errno_text(errno));
	std::vector<char> buf;
	char chunk[1 << 16];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int e = errno;
			close(fd);
			throw std::runtime_error("cannot read the BPF iterator: " + errno_text(e));
		}
		if (n == 0)
			break;
		buf.insert(buf.end(), chunk, chunk + n);
	}
	close(fd);
	return buf;
}

// The number of arguments the running kernel's tracepoint TP passes to a tp_btf / raw_tp
// program (its btf_trace_TP prototype less the context pointer), or -1 when the kernel's BTF
// does not describe it. Tracepoints gain arguments across kernels (sched_switch's prev_state in
// 5.18, sched_process_exit's group_dead after 6.12): a probe loads the program that matches.
inline int tracepoint_arg_count(const char *tp)
{
	const btf *vmlinux = vmlinux_btf();
	if (!vmlinux)
		return -1;
	std::string name = std::string("btf_trace_") + tp;
	int id = btf__find_by_name_kind(vmlinux, name.c_str(), BTF_KIND_TYPEDEF);
	if (id <= 0)
		return -1;
	const btf_type *t = btf__type_by_id(vmlinux, id);
	while (t && (btf_is_typedef(t) || btf_is_ptr(t)))
		t = btf__type_by_id(vmlinux, t->type);
	return t && btf_is_func_proto(t) ? static_cast<int>(btf_vlen(t)) - 1 : -1;
}

// Links attached by a probe, destroyed together.
class links {
public:
	links() = default;
	links(const links &) = delete;
	links &operator=(const links &) = delete;
	~links() { clear(); }

	// Attach one program with its section's default attach type.
	void attach(bpf_program *prog)
	{
		bpf_link *l = bpf_program__attach(prog);
		if (!l) {
			int err = errno;
			throw std::runtime_error(std::string("cannot attach ") + bpf_program__name(prog) +
						 " (" + bpf_program__section_name(prog) + "): " + errno_text(err));
		}
		links_.push_back(l);
	}
	// Attach every program of the object that is set to autoload.
	void attach_all(bpf_object *obj)
	{
		bpf_program *prog;
		try {
			bpf_object__for_each_program(prog, obj)
			{
				if (bpf_program__autoload(prog))
					attach(prog);
			}
		} catch (...) {
			clear(); // all or nothing
			throw;
		}
	}
	void add(bpf_link *l) { links_.push_back(l); }
	// Each detach waits in the kernel for the programs still running to finish (an RCU grace
	// period, tens of ms): detached side by side, the links wait for about one together instead
	// of one each.
	void clear()
	{
		std::vector<std::thread> side;
		for (size_t i = 1; i < links_.size(); i++) {
			try {
				side.emplace_back(bpf_link__destroy, links_[i]);
			} catch (...) {
				bpf_link__destroy(links_[i]); // no thread to spare: in turn
			}
		}
		if (!links_.empty())
			bpf_link__destroy(links_[0]);
		for (auto &t : side)
			t.join();
		links_.clear();
	}
	bool empty() const { return links_.empty(); }

private:
	std::vector<bpf_link *> links_;
};

} // namespace procimage::sdk

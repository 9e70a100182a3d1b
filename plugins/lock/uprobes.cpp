// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: the uprobes' life in the target processes (see uprobes.hpp).
#include "uprobes.hpp"
#include "functions.hpp"
#include "placement.hpp"
#include "symbols.hpp"

#include <procimage/bpf.hpp>

#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <optional>
#include <chrono>
#include <cstring>

namespace procimage::lock {

namespace sdk = procimage::sdk;

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

void release(const uprobes &u)
{
	size_t n = u.links.size() + u.fds.size();
	auto one = [&u](size_t i) {
		if (i < u.links.size())
			bpf_link__destroy(u.links[i]);
		else
			close(u.fds[i - u.links.size()]);
	};
	if (n < 4) {
		for (size_t i = 0; i < n; i++)
			one(i);
		return;
	}
	size_t nthreads = std::min<size_t>(n, 32);
	std::vector<std::thread> threads;
	for (size_t t = 0; t < nthreads; t++)
		threads.emplace_back([&one, t, nthreads, n] {
			for (size_t i = t; i < n; i += nthreads)
				one(i);
		});
	for (auto &th : threads)
		th.join();
}

const process_uprobes::probe_plan *process_uprobes::plan_for(uint32_t pid, const std::vector<mapped_lib> &libs, std::string &why)
{
	std::vector<file_id> key;
	for (const auto &l : libs)
		key.push_back({l.dev, l.ino});
	if (auto it = plans_.find(key); it != plans_.end())
		return &it->second;
	std::set<std::string> wanted;
	for (const auto &f : FUNCS)
		wanted.insert(f.name);
	std::map<std::string, std::pair<const mapped_lib *, uint64_t>> where;
	std::map<const mapped_lib *, elf_extra> extras;
	for (const auto &l : libs) {
		std::map<std::string, uint64_t> offsets;
		try {
			offsets = elf_function_offsets(l.open_path, wanted, &extras[&l]);
		} catch (const std::exception &e) {
			sdk::log(host_, PI_LOG_WARN, "lock: process " + std::to_string(pid) + ": " + e.what());
			continue;
		}
		for (const auto &[name, off] : offsets)
			if (!where.count(name))
				where[name] = {&l, off};
	}
	if (!where.count("pthread_mutex_lock") || !where.count("pthread_mutex_unlock")) {
		why = "lock: process " + std::to_string(pid) + " (" + proc_comm(pid) +
		      "): no pthread_mutex_lock/unlock in " + libs[0].path;
		return nullptr;
	}
	probe_plan plan;
	// the decoder, loaded once for this plan's placements and unloaded after
	std::optional<placement_session> decoding;
	if (cfg_.uprobe_place != "entry") {
		decoding.emplace();
		if (!decoding->ok() && !decoder_warned_) {
			decoder_warned_ = true;
			sdk::log(host_, PI_LOG_WARN,
				 "lock: no instruction decoder (" + placement_session::decoder_error() +
					 "): every uprobe stays at its function's entry, which costs more per call");
		}
	}
	for (const auto &f : FUNCS) {
		auto it = where.find(f.name);
		if (it == where.end())
			continue; // e.g. the clock* variants before glibc 2.30
		const mapped_lib &l = *it->second.first;
		uint64_t off = it->second.second;
		auto &p = plan[{l.dev, l.ino}];
		// an entry probe without a return probe may sit further in, where it is cheaper
		auto moved = [&]() -> uint64_t {
			const elf_extra &x = extras[&l];
			if (cfg_.uprobe_place == "entry" || !x.x86_64)
				return off;
			auto sz = x.sizes.find(f.name);
			uint64_t at = cheap_place(l.open_path, off, sz == x.sizes.end() ? 0 : sz->second);
			if (at)
				sdk::log(host_, PI_LOG_DEBUG,
					 "lock: " + std::string(f.name) + " probed at +" + std::to_string(at) + " in " + l.path);
			return off + at;
		};
		auto entry = [&](uint64_t at, uint32_t kind) {
			p.entry_off.push_back(at);
			p.entry_ck.push_back(LK_COOKIE(kind, f.op));
		};
		auto ret = [&]() {
			p.ret_off.push_back(off);
			p.ret_ck.push_back(LK_COOKIE(LK_CK_LOCK, f.op));
		};
		if (f.op == LK_OP_SPIN_LOCK && spin_lock_layout(l.open_path, off)) {
			entry(off + 3, LK_CK_SPIN_ATTEMPT);
			entry(off + 5, LK_CK_SPIN_ACQUIRED);
			continue;
		}
		if (first_insn_locked(l.open_path, off)) {
			sdk::log(host_, PI_LOG_WARN,
				 "lock: " + std::string(f.name) + " in " + l.path +
					 " starts with a locked instruction, which cannot carry a uprobe: not tracked");
			continue;
		}
		switch (f.role) {
		case func_def::BLOCKING:
			if (!cfg_.lock_return) {
				entry(moved(), LK_CK_LOCK_NORET);
				break;
			}
			entry(off, LK_CK_LOCK);
			ret();
			break;
		case func_def::LOCK: entry(off, LK_CK_LOCK); ret(); break;
		case func_def::COND: entry(off, LK_CK_COND); ret(); break;
		case func_def::UNLOCK: entry(moved(), LK_CK_UNLOCK); break;
		}
	}
	return &(plans_[key] = std::move(plan));
}

std::string process_uprobes::attach_process(uint32_t pid)
{
	auto libs = process_libs(pid);
	if (!libs)
		return "lock: process " + std::to_string(pid) + ": no such process";
	auto &ps = procs_[pid];
	if (!ps.start)
		if (auto st = read_proc_stat(pid))
			ps.start = st->start_ticks;
	if (libs->empty()) {
		ps.pending = true;
		return "lock: process " + std::to_string(pid) + " (" + proc_comm(pid) +
		       ") has no shared libc or libpthread in /proc/" + std::to_string(pid) +
		       "/maps (statically linked?): its lock functions cannot be probed; mode "
		       "\"contention\" (futex waits and wakes) works for any program";
	}
	ps.pending = false;
	// old glibc: the pthread functions live in libpthread; libc's are forwarders
	std::stable_sort(libs->begin(), libs->end(),
			 [](const mapped_lib &a, const mapped_lib &b) { return a.pthread > b.pthread; });
	std::string why;
	const probe_plan *plan = plan_for(pid, *libs, why);
	if (!plan)
		return why;
	bool any_new = false;
	for (const auto &l : *libs)
		if (plan->count({l.dev, l.ino}) && !ps.files.count({l.dev, l.ino}))
			any_new = true;
	if (!any_new)
		return ""; // already probed (an exec into the same libc keeps its uprobes)
	for (const auto &l : *libs) {
		auto it = plan->find({l.dev, l.ino});
		if (it == plan->end() || ps.files.count(it->first))
			continue;
		const places &p = it->second;
		auto fail = [&](const char *what, int err) {
			return std::runtime_error("lock: cannot attach the " + std::string(what) + " uprobes in " + l.path +
						  " (process " + std::to_string(pid) + "): " + sdk::errno_text(err));
		};
		if (multi_) {
			int fd = attach_multi(entry_prog_, l.open_path, pid, p.entry_off, p.entry_ck, false);
			if (fd < 0)
				throw fail("entry", -fd);
			ps.fds.push_back(fd);
			if (!p.ret_off.empty()) {
				fd = attach_multi(return_prog_, l.open_path, pid, p.ret_off, p.ret_ck, true);
				if (fd < 0)
					throw fail("return", -fd);
				ps.fds.push_back(fd);
			}
		} else {
			auto single = [&](bpf_program *prog, uint64_t at, uint64_t ck, bool retprobe) {
				LIBBPF_OPTS(bpf_uprobe_opts, o, .bpf_cookie = ck, .retprobe = retprobe);
				bpf_link *link = bpf_program__attach_uprobe_opts(prog, static_cast<pid_t>(pid),
										 l.open_path.c_str(), at, &o);
				if (!link)
					throw fail(retprobe ? "return" : "entry", errno);
				ps.links.push_back(link);
			};
			for (size_t i = 0; i < p.entry_off.size(); i++)
				single(entry_prog_, p.entry_off[i], p.entry_ck[i], false);
			for (size_t i = 0; i < p.ret_off.size(); i++)
				single(return_prog_, p.ret_off[i], p.ret_ck[i], true);
		}
		ps.files.insert(it->first);
	}
	sdk::log(host_, PI_LOG_DEBUG,
		 "lock: " + std::to_string(ps.links.size() + ps.fds.size()) + " uprobe links in process " + std::to_string(pid) + " (" +
			 (*libs)[0].path + ")");
	return "";
}

void process_uprobes::retry_pending()
{
	std::vector<uint32_t> pids;
	for (const auto &[pid, ps] : procs_)
		if (ps.pending)
			pids.push_back(pid);
	for (uint32_t pid : pids) {
		std::string why;
		try {
			why = attach_process(pid);
		} catch (const std::exception &e) {
			if (!process_ended(pid))
				sdk::log(host_, PI_LOG_WARN, e.what());
			forget_process(pid);
			continue;
		}
		if (why.find("no such process") != std::string::npos) {
			forget_process(pid);
			continue;
		}
		auto &ps = procs_[pid];
		if (ps.pending && ++ps.retries == 3)
			sdk::log(host_, PI_LOG_WARN, why);
	}
}

void process_uprobes::forget_ended()
{
	std::vector<uint32_t> ended;
	for (const auto &[pid, ps] : procs_)
		if (process_ended(pid, ps.start))
			ended.push_back(pid);
	for (uint32_t pid : ended)
		forget_process(pid);
}

void process_uprobes::on_newproc(const lk_newproc &e)
{
	std::string why;
	try {
		why = attach_process(e.pid);
		// Just exec'd: the dynamic loader maps libc within a millisecond or so. Look again
		// for a little while now rather than at the next tick (up to interval_ms later,
		// when the program may long have locked and unlocked).
		for (int i = 0; i < 20 && e.why == LK_NEW_EXEC && pending(e.pid) && !process_ended(e.pid); i++) {
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
			why = attach_process(e.pid);
		}
	} catch (const std::exception &) {
		// a short-lived child may be gone before its uprobes are in: not an error
		if (!process_ended(e.pid))
			throw;
		forget_process(e.pid);
		return;
	}
	if (!why.empty() && why.find("no such process") == std::string::npos && !pending(e.pid))
		sdk::log(host_, PI_LOG_WARN, why);
}

void process_uprobes::forget_process(uint32_t pid)
{
	auto it = procs_.find(pid);
	if (it == procs_.end())
		return;
	reaper_.add(std::move(it->second.links), std::move(it->second.fds));
	procs_.erase(it);
}

void process_uprobes::detach_all()
{
	for (auto &[pid, ps] : procs_)
		reaper_.add(std::move(ps.links), std::move(ps.fds));
	procs_.clear();
	plans_.clear();
	reaper_.wait_idle();
}

} // namespace procimage::lock

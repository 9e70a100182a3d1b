// SPDX-License-Identifier: Apache-2.0
//
// lock probe, user side: the uprobes' life in the target processes. Which places of which file
// get which probe (worked out once per set of libraries), attaching them to one process (one
// uprobe_multi link per direction on Linux 6.6+, else one perf-event uprobe per place), looking
// again for a libc that is not mapped yet, and releasing the links of processes that ended on
// a thread of their own.
#pragma once

#include "config.hpp"
#include "lock.h"
#include "procfs.hpp"

#include <procimage/sdk.hpp>

#include <bpf/libbpf.h>

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace procimage::lock {

constexpr uint32_t BPF_TRACE_UPROBE_MULTI_ = 48; // enum bpf_attach_type, Linux 6.6

// One uprobe_multi link: prog at every offset of path, for process pid only. Returns the link
// fd or -errno.
int attach_multi(bpf_program *prog, const std::string &path, uint32_t pid, const std::vector<uint64_t> &offsets,
		 const std::vector<uint64_t> &cookies, bool ret);

// Uprobe links to remove: bpf_link objects (perf-event uprobes) and link descriptors
// (uprobe_multi).
struct uprobes {
	std::vector<bpf_link *> links;
	std::vector<int> fds;
	bool empty() const { return links.empty() && fds.empty(); }
};

// Removing a uprobe waits for the kernel's grace periods (tens of ms each here): remove them
// from several threads at once so that their waits overlap.
void release(const uprobes &u);

// Releases the uprobes of processes that ended on a thread of its own, so that the event loop
// goes on with its records and ticks while the kernel waits for its grace periods.
class link_reaper {
public:
	~link_reaper()
	{
		{
			std::lock_guard<std::mutex> g(m_);
			stop_ = true;
		}
		cv_.notify_all();
		if (worker_.joinable())
			worker_.join();
	}

	void add(std::vector<bpf_link *> links, std::vector<int> fds)
	{
		if (links.empty() && fds.empty())
			return;
		{
			std::lock_guard<std::mutex> g(m_);
			queued_.links.insert(queued_.links.end(), links.begin(), links.end());
			queued_.fds.insert(queued_.fds.end(), fds.begin(), fds.end());
			if (!worker_.joinable())
				worker_ = std::thread([this] { run(); });
		}
		cv_.notify_all();
	}

	// until everything handed over so far is released
	void wait_idle()
	{
		std::unique_lock<std::mutex> g(m_);
		cv_.wait(g, [this] { return queued_.empty() && !busy_; });
	}

private:
	void run()
	{
		std::unique_lock<std::mutex> g(m_);
		for (;;) {
			cv_.wait(g, [this] { return stop_ || !queued_.empty(); });
			if (queued_.empty())
				return; // stopping, nothing left
			uprobes batch = std::move(queued_);
			queued_ = {};
			busy_ = true;
			g.unlock();
			release(batch);
			g.lock();
			busy_ = false;
			cv_.notify_all();
		}
	}

	std::mutex m_;
	std::condition_variable cv_;
	uprobes queued_;
	bool busy_ = false, stop_ = false;
	std::thread worker_;
};

// The uprobes of every target process, for one activation.
class process_uprobes {
public:
	// entry / ret: lock.bpf.c's lk_entry and lk_return; multi: uprobe_multi links
	process_uprobes(const pi_host &host, const config &cfg, bpf_program *entry, bpf_program *ret, bool multi)
		: host_(host), cfg_(cfg), entry_prog_(entry), return_prog_(ret), multi_(multi)
	{
	}
	~process_uprobes() { detach_all(); }

	// Attach the uprobes to one process's libc; "" on success, else why not.
	std::string attach_process(uint32_t pid);
	// A new process of the target was announced (lk_newproc): attach to it now.
	void on_newproc(const lk_newproc &e);
	// Look again for the libc of processes that had none mapped yet.
	void retry_pending();
	// Release the uprobes of target processes that have ended: a target that forks many
	// short-lived children would otherwise keep two links (file descriptors) per child until
	// the end of the activation.
	void forget_ended();
	// Every uprobe out of every process when this returns; the plans are forgotten too.
	void detach_all();

private:
	struct proc_state {
		std::vector<bpf_link *> links; // one uprobe each (uprobe_attach "single")
		std::vector<int> fds;          // uprobe_multi links
		std::set<std::pair<uint64_t, uint64_t>> files; // (dev, inode) probed
		bool pending = false;                          // no libc seen yet: look again
		int retries = 0;
		uint64_t start = 0; // start time (read_proc_stat) at the first attach
	};

	// The places to probe in one file: (offset, cookie) for entries and for returns.
	struct places {
		std::vector<uint64_t> entry_off, entry_ck, ret_off, ret_ck;
	};
	using file_id = std::pair<uint64_t, uint64_t>; // (dev, inode)
	using probe_plan = std::map<file_id, places>;

	// Where the functions are in a process's libraries and where each probe goes: symbol
	// tables read, instructions decoded. It depends on the files alone (and the
	// configuration), so it is worked out once per set of files and activation and reused for
	// every process that maps them (each fork of a busy target would otherwise pay for it).
	// nullptr, with `why` set, when the files lack the mutex functions.
	const probe_plan *plan_for(uint32_t pid, const std::vector<mapped_lib> &libs, std::string &why);
	bool pending(uint32_t pid) const
	{
		auto it = procs_.find(pid);
		return it != procs_.end() && it->second.pending;
	}
	// A process that ended: its uprobes are released by the reaper, off the event loop.
	void forget_process(uint32_t pid);

	const pi_host &host_;
	const config &cfg_;
	bpf_program *entry_prog_, *return_prog_;
	bool multi_;
	std::map<uint32_t, proc_state> procs_;
	std::map<std::vector<file_id>, probe_plan> plans_; // per set of libraries, this activation
	bool decoder_warned_ = false; // that the instruction decoder cannot be loaded, said once
	link_reaper reaper_;
};

} // namespace procimage::lock

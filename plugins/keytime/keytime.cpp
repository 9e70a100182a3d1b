// SPDX-License-Identifier: Apache-2.0
//
// keytime probe, user side: load/attach keytime.bpf.c, decode its records.
#include "keytime.h"
#include "keytime.skel.h"
#include "symbolize.hpp"

#include <procimage/bpf.hpp>
#include <procimage/config.hpp>
#include <procimage/sdk.hpp>
#include <probe_keytime_record_schema.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

#include <sys/syscall.h>

namespace procimage::keytime {

namespace sdk = procimage::sdk;

struct config {
	bool cpu = false;
	bool stacks = false;
	uint32_t argv_max = 16;
	uint32_t ringbuf_kb = 1024;

	explicit config(const std::string &text)
	{
		sdk::config_reader r(text);
		cpu = r.get_bool("cpu", false);
		stacks = r.get_bool("stacks", false);
		argv_max = static_cast<uint32_t>(r.get_int("argv_max", 16, 1, KT_MAX_ARGS));
		ringbuf_kb = static_cast<uint32_t>(r.get_int("ringbuf_kb", 1024, 64, 1 << 20));
		if (ringbuf_kb & (ringbuf_kb - 1))
			throw sdk::config_error("ringbuf_kb: expected a power of two, got " +
						std::to_string(ringbuf_kb));
		if (stacks && !cpu)
			throw sdk::config_error("stacks: needs \"cpu\": true (stacks are taken at off-CPU points)");
		r.finish();
	}
};

const char *clone_kind_name(uint32_t k)
{
	switch (k) {
	case KT_CLONE_FORK: return "fork";
	case KT_CLONE_VFORK: return "vfork";
	case KT_CLONE_THREAD: return "thread";
	default: return "unknown";
	}
}

const char *offcpu_reason_name(uint32_t r)
{
	switch (r) {
	case KT_OFF_PREEMPTED: return "preempted";
	case KT_OFF_YIELD: return "yield";
	case KT_OFF_SLEEPING: return "sleeping";
	case KT_OFF_DISK: return "disk_wait";
	case KT_OFF_IDLE_WAIT: return "idle_wait";
	case KT_OFF_STOPPED: return "stopped";
	case KT_OFF_TRACED: return "traced";
	case KT_OFF_DEAD: return "dead";
	case KT_OFF_PARKED: return "parked";
	case KT_OFF_KILLABLE: return "killable_wait";
	default: return "other";
	}
}

class keytime_probe final : public sdk::probe {
public:
	static void validate(const std::string &text) { config c(text); }

	keytime_probe(const pi_host &host, const std::string &text) : sdk::probe(host), cfg_(text)
	{
	}

	~keytime_probe() override
	{
		links_.clear();
		keytime_bpf__destroy(skel_);
	}

	void load(pi_probe_io &io) override
	{
		sdk::require_kernel_for("keytime");
		skel_ = keytime_bpf__open();
		if (!skel_)
			throw std::runtime_error("cannot open the keytime BPF object: " + sdk::errno_text(errno));
		sdk::set_common_rodata(skel_->rodata, host(), cfg_.ringbuf_kb * 1024ULL);
		skel_->rodata->kt_argv_max = cfg_.argv_max;
		skel_->rodata->kt_stacks_on = cfg_.stacks;
		skel_->rodata->kt_nr_sched_yield = SYS_sched_yield;
		sdk::reuse_shared_maps(skel_->obj, host());
		bpf_map__set_max_entries(skel_->maps.kt_events, cfg_.ringbuf_kb * 1024);
		if (cfg_.stacks)
			bpf_map__set_max_entries(skel_->maps.kt_stackbufs, 16384);
		bool exit_has_group_dead = sdk::tracepoint_arg_count("sched_process_exit") >= 2;
		bpf_program__set_autoload(skel_->progs.kt_process_exit, exit_has_group_dead);
		bpf_program__set_autoload(skel_->progs.kt_process_exit_nogd, !exit_has_group_dead);
		bool switch_has_state = sdk::tracepoint_arg_count("sched_switch") >= 4;
		bpf_program__set_autoload(skel_->progs.kt_switch, switch_has_state);
		bpf_program__set_autoload(skel_->progs.kt_switch_nostate, !switch_has_state);
		// kt_switch is always loaded (verified once) but attached only when an activation asks
		// for on/off-CPU intervals: procimage-ctl -k 1 can turn them on without a reload.
		int err = keytime_bpf__load(skel_);
		if (err)
			throw std::runtime_error("cannot load the keytime BPF object: " + sdk::errno_text(err));
		if (cfg_.stacks && !syms_.load_kernel())
			sdk::log(host(), PI_LOG_WARN,
				 "keytime: /proc/kallsyms shows no addresses (kernel.kptr_restrict?): kernel frames stay "
				 "unresolved");
		io.n_ringbufs = 1;
		io.ringbuf_fds[0] = bpf_map__fd(skel_->maps.kt_events);
		io.lost_map_fd = sdk::lost_map_fd(skel_->obj);
		sdk::name_lost_causes(io, {{KT_LOST_VFORKS, "kt_vforks: a vfork parent was not followed: 4096 are suspended at once"},
					   {KT_LOST_BIRTHS, "kt_births: a new thread's creator was not kept (65536 live threads): created_by unknown"},
					   {KT_LOST_EXECS, "kt_exec_inflight: an exec was not followed: 1024 are in progress at once"},
					   {KT_LOST_CPU, "kt_cpustate: on/off-CPU intervals were not recorded: 16384 threads are followed at once"},
					   {KT_LOST_STACKS, "kt_stackbufs: off-CPU records went without a stack: 16384 threads are followed at once"}});
	}

	void attach(const pi_target &target) override
	{
		bool cpu = cfg_.cpu;
		if (target.options) {
			auto opts = nlohmann::json::parse(target.options);
			if (opts.contains("cpu"))
				cpu = opts.at("cpu").get<bool>();
		}
		if (cfg_.stacks && !cpu)
			throw std::runtime_error("stacks are configured: activate keytime with on/off-CPU (-k 1)");
		links_.clear();
		reset();
		bpf_program *prog;
		bpf_object__for_each_program(prog, skel_->obj)
		{
			if (!bpf_program__autoload(prog) || ((prog == skel_->progs.kt_switch || prog == skel_->progs.kt_switch_nostate) && !cpu))
				continue;
			links_.attach(prog);
		}
	}

	void detach() override { links_.clear(); }

	void on_data(uint32_t, const void *data, size_t len) override
	{
		if (len < sizeof(pi_event_header))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		const auto *h = static_cast<const pi_event_header *>(data);
		switch (h->kind) {
		case KT_EXEC: return on_exec(data, len);
		case KT_EXIT: return on_exit(*need<kt_exit>(data, len));
		case KT_NEWTASK: return on_newtask(*need<kt_newtask>(data, len));
		case KT_VFORK_DONE: return on_vfork_done(*need<kt_vfork_done>(data, len));
		case KT_ONCPU:
		case KT_OFFCPU: return on_cpu(*need<kt_cpu>(data, len), len >= sizeof(kt_cpu_stack) ? static_cast<const kt_cpu_stack *>(data) : nullptr);
		default: throw std::runtime_error("unknown record kind " + std::to_string(h->kind));
		}
	}

private:
	template <typename T> static const T *need(const void *data, size_t len)
	{
		if (len < sizeof(T))
			throw std::runtime_error("short record (" + std::to_string(len) + " bytes)");
		return static_cast<const T *>(data);
	}

	sdk::record make(const char *event, const pi_event_header &h)
	{
		sdk::record r("keytime", event);
		r.header(h, host());
		return r;
	}

	static std::string cstr(const char *s, size_t max) { return std::string(s, strnlen(s, max)); }

	void on_exec(const void *data, size_t len)
	{
		const size_t fixed = offsetof(kt_exec, args);
		if (len < fixed)
			throw std::runtime_error("short exec record");
		const auto *e = static_cast<const kt_exec *>(data);
		size_t args_size = std::min<size_t>(e->args_size, len - fixed);
		std::vector<std::string> argv;
		bool truncated = e->flags & KT_EXEC_ARGS_TRUNCATED;
		size_t pos = 0;
		while (pos < args_size) {
			size_t n = strnlen(e->args + pos, args_size - pos);
			if (argv.size() == cfg_.argv_max) {
				truncated = true;
				break;
			}
			argv.emplace_back(e->args + pos, n);
			pos += n + 1;
		}
		if (e->ret == 0 && cfg_.stacks)
			syms_.forget(e->h.pid); // a new image: its mappings are read again when needed
		auto r = make("exec", e->h);
		r.str("filename", cstr(e->filename, sizeof(e->filename)))
			.strv("argv", argv)
			.boolean("argv_truncated", truncated)
			.boolean("unreadable", (e->flags & KT_EXEC_UNREADABLE) != 0)
			.i64("ret", e->ret, PI_FMT_ERRNO)
			.str("old_comm", cstr(e->old_comm, sizeof(e->old_comm)))
			.u64("old_tid", e->old_tid);
		r.emit(host());
	}

	void on_exit(const kt_exit &e)
	{
		uint64_t now = e.h.ts_boot_ns;
		uint32_t sig = e.exit_code & 0x7f;
		auto r = make("exit", e.h);
		r.u64("exit_code", sig ? 0 : (e.exit_code >> 8) & 0xff)
			.u64("signal", sig, PI_FMT_SIGNAL)
			.boolean("core_dumped", (e.exit_code & 0x80) != 0)
			.boolean("group_dead", e.group_dead != 0)
			.u64("ppid", e.ppid)
			.u64("thread_lifetime_ns", now - std::min<uint64_t>(now, e.thread_start_ns), PI_FMT_DURATION_NS);
		if (e.group_dead)
			r.u64("process_lifetime_ns", now - std::min<uint64_t>(now, e.process_start_ns), PI_FMT_DURATION_NS);
		r.str("created_by", e.created_by ? clone_kind_name(e.created_by) : "unknown");
		r.emit(host());
	}

	void on_newtask(const kt_newtask &e)
	{
		auto r = make(clone_kind_name(e.clone_kind), e.h);
		r.u64("child_pid", e.child_pid)
			.u64("child_tid", e.child_tid)
			.str("child_comm", cstr(e.child_comm, sizeof(e.child_comm)))
			.u64("clone_flags", e.clone_flags, PI_FMT_HEX);
		r.emit(host());
	}

	void on_vfork_done(const kt_vfork_done &e)
	{
		auto r = make("vfork_done", e.h);
		r.u64("child_pid", e.child_pid)
			.u64("child_tid", e.child_tid)
			.u64("suspended_ns", e.dur_ns, PI_FMT_DURATION_NS)
			.str("by", e.by_exec ? "exec" : "exit");
		r.emit(host());
	}

	void on_cpu(const kt_cpu &e, const kt_cpu_stack *st = nullptr)
	{
		bool off = e.h.kind == KT_OFFCPU;
		uint64_t dur = e.h.ts_boot_ns - std::min<uint64_t>(e.h.ts_boot_ns, e.start_ns);
		auto r = make(off ? "offcpu" : "oncpu", e.h);
		r.u64("dur_ns", dur, PI_FMT_DURATION_NS);
		if (off) {
			r.str("reason", offcpu_reason_name(e.reason))
				.u64("state", e.state, PI_FMT_HEX)
				.u64("prev_cpu", e.prev_cpu);
			if (cfg_.stacks) {
				r.strv("kstack", kernel_stack(st));
				r.strv("ustack", user_stack(e.h, st));
			}
		}
		r.emit(host());
	}

	std::vector<std::string> kernel_stack(const kt_cpu_stack *st)
	{
		std::vector<std::string> out;
		uint32_t nr = st ? st->c.stack_nr : 0;
		const auto *ips = st ? reinterpret_cast<const uint64_t *>(st->ips) : nullptr;
		for (uint32_t i = 0; i < nr && i < KT_MAX_STACK; i++) {
			if (!ips[i])
				break;
			std::string name = syms_.kernel_stack(&ips[i], 1).front();
			// the frames of the BPF program and its trampoline are ours, not the task's
			if (out.empty() && (name.rfind("bpf_prog_", 0) == 0 || name.rfind("bpf_trace_run", 0) == 0 ||
					    name.rfind("__bpf_trace", 0) == 0 || name.rfind("__traceiter_", 0) == 0))
				continue;
			out.push_back(std::move(name));
		}
		return out;
	}

	// The thread's user stack, resolved through its process's mappings (read when first needed:
	// the record is written when the thread is back on a CPU, so the process is most often
	// still there; an exec drops what was read before it).
	std::vector<std::string> user_stack(const pi_event_header &h, const kt_cpu_stack *st)
	{
		if (!st || !st->ustack_nr)
			return {};
		size_t n = std::min<size_t>(st->ustack_nr, KT_MAX_STACK);
		auto out = syms_.user_stack(h.pid, h.pid_start_ns, 0, reinterpret_cast<const uint64_t *>(st->uips), n);
		syms_.trim(4096);
		return out;
	}

	config cfg_;
	keytime_bpf *skel_ = nullptr;
	sdk::links links_;
	symbolize::symbolizer syms_;

	// A new activation starts clean: no half-open interval, exec or vfork from before.
	void reset()
	{
		sdk::clear_map(bpf_map__fd(skel_->maps.kt_births), sizeof(uint32_t));
		sdk::clear_map(bpf_map__fd(skel_->maps.kt_cpustate), sizeof(uint32_t));
		sdk::clear_map(bpf_map__fd(skel_->maps.kt_exec_inflight), sizeof(uint32_t));
		sdk::clear_map(bpf_map__fd(skel_->maps.kt_vforks), sizeof(uint32_t));
		sdk::clear_map(bpf_map__fd(skel_->maps.kt_stackbufs), sizeof(uint32_t));
		sdk::clear_map(bpf_map__fd(skel_->maps.kt_stack_seen), sizeof(uint32_t));
	}
};

} // namespace procimage::keytime

PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(procimage::keytime::keytime_probe, "keytime", PROCIMAGE_VERSION,
		       "key time points: fork, vfork, thread creation, exec, exit, on/off CPU",
		       PROCIMAGE_RECORD_SCHEMA);

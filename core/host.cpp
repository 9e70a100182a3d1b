// SPDX-License-Identifier: Apache-2.0
#include "host.hpp"
#include "side_by_side.hpp"
#include "cgroup_names.hpp"
#include "losses.hpp"
#include "schema.hpp"

#include <procimage/kernel_features.hpp>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <csignal>
#include <algorithm>
#include <cstring>
#include <map>
#include <atomic>
#include <system_error>
#include <thread>

#include <malloc.h>
#include <sys/sysinfo.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

namespace procimage::core {

struct ring_source {
	host::probe_inst *probe;
	uint32_t index;
};

namespace {
// One drain of the ring buffers runs for at most this long: a probe whose records take long to
// handle (lock attaches uprobes to every new process) must not keep the loop from its ticks,
// its control requests and its signals while the target keeps producing records.
constexpr uint64_t DRAIN_BUDGET_NS = 50'000'000;
constexpr int DRAIN_PAUSED = -EINTR; // what ringbuf_cb returns to stop a drain early
constexpr uint64_t LOST_CHECK_NS = 100'000'000; // at most this often outside the ticks
} // namespace

struct host::sink_inst {
	component spec;
	plugin_ptr plugin;
	void *inst = nullptr;
	pi_host api{};
	uint64_t records = 0;
	bool failed = false;
	std::shared_ptr<spdlog::logger> log;
};

struct host::probe_inst {
	host *owner = nullptr;
	component spec;
	plugin_ptr plugin;
	void *inst = nullptr;
	uint32_t slot = 0;
	pi_host api{};
	pi_probe_io io{};
	target_spec target;
	std::vector<size_t> sinks;
	std::vector<std::unique_ptr<ring_source>> sources;
	bool attached = false;
	bool ever_attached = false; // activated at least once: its totals belong to the run
	nlohmann::json options = nlohmann::json::object(); // of the current activation
	uint64_t activated_boot_ns = 0;
	uint64_t deadline_boot_ns = 0; // 0: no time limit
	uint64_t records_at_activation = 0;
	uint64_t kernel_records = 0;
	uint64_t lost_total = 0;
	std::unique_ptr<loss_ledger> losses; // from load on
	uint64_t errors = 0;
	std::shared_ptr<spdlog::logger> log;
	// The host checks the comm filter on this probe's records: its kernel side cannot (built
	// before ABI 1.3) or cannot whole (a pattern with a wildcard other than a trailing '*').
	bool host_comm = false;

	const pi_probe_ops &ops() const { return *plugin->desc->probe; }
	std::string label() const
	{
		return "probe '" + spec.id + "' (" + plugin->name() + " " + plugin->version() + ")";
	}
};

namespace {

std::shared_ptr<spdlog::logger> named_logger(const std::string &name)
{
	auto l = spdlog::get(name);
	if (!l) {
		l = spdlog::default_logger()->clone(name);
		spdlog::register_logger(l);
	}
	return l;
}

// libbpf parses the kernel's BTF (5-6 MB, copied twice) for every BPF object it loads, and
// frees it after. Large blocks come from mmap by default, so each parse touches fresh pages,
// one fault per 4 KiB, and faults are dear in a VM (about 40 ms per parse here against 4 ms on
// pages already mapped). While the objects load, freed memory stays in the heap for the next
// parse; afterwards it is handed back to the system. The loading threads share one arena while
// they run: malloc_trim gives back the top of the main arena only.
struct keep_freed_memory {
	keep_freed_memory()
	{
		mallopt(M_MMAP_THRESHOLD, 64 << 20);
		mallopt(M_TRIM_THRESHOLD, 512 << 20);
		mallopt(M_ARENA_MAX, 1);
	}
	~keep_freed_memory()
	{
		mallopt(M_MMAP_THRESHOLD, 128 << 10); // glibc's defaults
		mallopt(M_TRIM_THRESHOLD, 128 << 10);
		mallopt(M_ARENA_MAX, 8 * std::max(1, get_nprocs())); // glibc's default on 64-bit
		malloc_trim(0);
	}
	keep_freed_memory(const keep_freed_memory &) = delete;
	keep_freed_memory &operator=(const keep_freed_memory &) = delete;
};

int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	static auto log = named_logger("libbpf");
	// A verifier log runs to many kilobytes and its last lines say what failed: keep all of it.
	va_list copy;
	va_copy(copy, ap);
	int len = vsnprintf(nullptr, 0, fmt, copy);
	va_end(copy);
	if (len < 0)
		return 0;
	std::string buf(static_cast<size_t>(len) + 1, '\0');
	vsnprintf(buf.data(), buf.size(), fmt, ap);
	buf.resize(static_cast<size_t>(len));
	while (!buf.empty() && buf.back() == '\n')
		buf.pop_back();
	switch (level) {
	case LIBBPF_WARN: log->warn("{}", buf); break;
	case LIBBPF_INFO: log->debug("{}", buf); break;
	default: log->trace("{}", buf); break;
	}
	return 0;
}


} // namespace

host::host() = default;

host::~host()
{
	shutdown();
	if (rb_)
		ring_buffer__free(rb_);
	for (int fd : {epfd_, timerfd_, flushfd_, sigfd_, deadlinefd_, durationfd_})
		if (fd >= 0)
			close(fd);
}

static void log_to(spdlog::logger &l, int level, const char *msg)
{
	switch (level) {
	case PI_LOG_DEBUG: l.debug("{}", msg); break;
	case PI_LOG_INFO: l.info("{}", msg); break;
	case PI_LOG_WARN: l.warn("{}", msg); break;
	default: l.error("{}", msg); break;
	}
}

void host::log_cb(void *ctx, int level, const char *msg)
{
	log_to(*static_cast<probe_inst *>(ctx)->log, level, msg);
}

void host::sink_log_cb(void *ctx, int level, const char *msg)
{
	log_to(*static_cast<sink_inst *>(ctx)->log, level, msg);
}

void host::emit_cb(void *ctx, const pi_record *rec)
{
	auto *p = static_cast<probe_inst *>(ctx);
	if (!rec || rec->size < sizeof(pi_record)) {
		p->errors++;
		p->log->error("emitted a malformed record");
		return;
	}
	// Records carry the instance's id ("keytime/cpu") and the plugin's name, whatever the
	// plugin wrote (a record from an older, smaller pi_record is copied into the full one).
	// Filtered, not lost: a thread's record the comm filter leaves out (rows of no thread, the
	// system-wide ones, pass).
	if (p->host_comm && rec->pid != 0 && rec->comm && rec->comm[0] &&
	    !p->owner->pipe_.filters.comm_matches(rec->comm))
		return;
	pi_record named{};
	std::memcpy(&named, rec, std::min<size_t>(rec->size, sizeof named));
	named.size = sizeof named;
	named.probe = p->spec.id.c_str();
	named.plugin = p->plugin->desc->name;
	if (p->owner->parallel_detach_) {
		// probes detaching side by side: one record at a time reaches the sinks
		std::lock_guard<std::mutex> lock(p->owner->emit_mu_);
		named.cgroup = p->owner->cgroup_of(*p, named);
		p->owner->deliver(p->sinks, named);
		return;
	}
	named.cgroup = p->owner->cgroup_of(*p, named);
	p->owner->deliver(p->sinks, named);
}

// A record about a process: its cgroup. A row about a cgroup target (scope "target"): the
// target's cgroup. Rows about the system, and the rows of other targets, carry none.
const char *host::cgroup_of(const probe_inst &p, const pi_record &rec)
{
	if (!cgroup_names_)
		return nullptr;
	if (rec.pid)
		return cgroup_names_->of_record(rec.pid, rec.pid_start_ns, rec.cgroup_id);
	if (p.target.kind != target_spec::kind_t::cgroup)
		return nullptr;
	for (uint32_t i = 0; i < rec.nfields; i++) {
		const pi_field &f = rec.fields[i];
		if (f.type == PI_FT_STR && f.key && std::strcmp(f.key, "scope") == 0)
			return f.v.s && std::strcmp(f.v.s, "target") == 0 ? cgroup_names_->of_id(p.target.cgroup_id) : nullptr;
	}
	return nullptr;
}

std::vector<size_t> host::all_sinks() const
{
	std::vector<size_t> all;
	for (size_t i = 0; i < sinks_.size(); i++)
		all.push_back(i);
	return all;
}

void host::deliver(const std::vector<size_t> &sinks, const pi_record &rec)
{
	for (size_t i : sinks) {
		auto &s = *sinks_[i];
		if (s.failed)
			continue;
		int rc;
		try {
			rc = s.plugin->desc->sink->write(s.inst, &rec);
		} catch (...) {
			rc = PI_ERR;
		}
		if (rc == PI_OK) {
			s.records++;
			continue;
		}
		sink_failed(s, std::string("failed to write a ") + (rec.probe ? rec.probe : "?") + "/" +
				       (rec.event ? rec.event : "?") + " record");
	}
}

// A sink that failed receives nothing more. When none is left, nothing collected could be
// written anywhere: the probes stop (a command started with -- CMD runs on to its end), and
// the run ends with EXIT_RUNTIME: its output is incomplete.
void host::sink_failed(sink_inst &s, const std::string &what)
{
	s.failed = true;
	spdlog::error("sink '{}' ({} {}) {}; it receives no more records, and the run's output is incomplete",
		      s.spec.id, s.plugin->name(), s.plugin->version(), what);
	if (no_sink_left_ || std::any_of(sinks_.begin(), sinks_.end(), [](const auto &x) { return !x->failed; }))
		return;
	no_sink_left_ = true; // acted upon by the loop, outside any ring-buffer callback
}

void host::stop_collecting_without_sinks()
{
	if (!no_sink_left_ || no_sink_handled_)
		return;
	no_sink_handled_ = true;
	spdlog::error("no sink is left to write to: collection stops{}",
		      cmd_.pid() > 0 && !cmd_.exited() ? " (the command runs on to its end)" : "");
	for (auto &p : probes_)
		if (p->attached)
			deactivate(*p, "no sink left");
	if (cmd_.pid() <= 0 || cmd_.exited())
		stopping_ = true;
}

int host::ringbuf_cb(void *ctx, void *data, size_t size)
{
	auto *src = static_cast<ring_source *>(ctx);
	auto *p = src->probe;
	p->kernel_records++;
	int rc;
	try {
		rc = p->ops().on_data(p->inst, src->index, data, size);
	} catch (...) {
		rc = PI_ERR;
	}
	if (rc != PI_OK) {
		if (p->errors++ < 5)
			p->log->error("{} could not decode a {}-byte record", p->label(), size);
	}
	// this record is consumed either way; a negative return leaves the rest for later (the
	// clock is read every 8 records)
	if ((++p->owner->drained_ & 7) != 0)
		return 0;
	return p->owner->drain_over_budget() ? DRAIN_PAUSED : 0;
}

bool host::drain_over_budget() const
{
	return drain_deadline_ns_ != 0 && boot_now_ns() >= drain_deadline_ns_;
}

result<void> host::prepare(const pipeline &p, const host_options &opts)
{
	pipe_ = p;
	control_name_ = opts.control_name;
	dirs_ = opts.plugin_dirs;
	for (const auto &d : p.plugin_dirs)
		dirs_.push_back(d);
	for (const auto &d : default_plugin_dirs())
		dirs_.push_back(d);

	auto check = [&](pi_plugin_kind kind, const component &c) -> result<plugin_ptr> {
		auto pl = find_plugin(kind, c.plugin, dirs_);
		if (!pl)
			return pl.err().context(c.json_path);
		char err[PI_ERRBUF_SIZE] = "";
		std::string cfg = c.config.dump();
		int rc;
		try {
			rc = kind == PI_KIND_PROBE ? (*pl)->desc->probe->validate(cfg.c_str(), err, sizeof err)
						   : (*pl)->desc->sink->validate(cfg.c_str(), err, sizeof err);
		} catch (...) {
			return usage_error(c.json_path + ": plugin '" + (*pl)->name() + "' " + (*pl)->version() +
					   " threw an exception while checking its configuration");
		}
		if (rc != PI_OK) {
			// Plugins name the key first ("path: expected a string"): make it a JSON path.
			std::string msg = err[0] ? err : "invalid configuration";
			bool keyed = msg.find(": ") != std::string::npos && msg.find(' ') > msg.find(": ");
			return usage_error(c.json_path + (keyed ? "." : ": ") + msg);
		}
		return pl;
	};

	for (const auto &c : p.sinks) {
		auto pl = check(PI_KIND_SINK, c);
		if (!pl)
			return pl.err();
		auto s = std::make_unique<sink_inst>();
		s->spec = c;
		s->plugin = *pl;
		sinks_.push_back(std::move(s));
	}
	if (p.probes.size() > PI_MAX_SLOTS)
		return usage_error("probes: at most " + std::to_string(PI_MAX_SLOTS) + " probes per host");
	uint32_t slot = 0;
	for (const auto &c : p.probes) {
		auto pl = check(PI_KIND_PROBE, c);
		if (!pl)
			return pl.err();
		auto pr = std::make_unique<probe_inst>();
		pr->owner = this;
		pr->spec = c;
		pr->plugin = *pl;
		pr->slot = slot++;
		pr->target = c.target ? *c.target : p.target;
		pr->sinks = p.sinks_of(c.id);
		pr->log = named_logger(c.id);
		probes_.push_back(std::move(pr));
	}
	// The run's record schema, joined once from the probes' declarations (a probe whose
	// declaration is malformed is refused here, before anything is loaded).
	std::vector<schema::declaration> decls;
	for (const auto &pr : probes_)
		decls.push_back({pr->plugin->name(), pr->plugin->record_schema()});
	auto joined = schema::join(decls);
	if (!joined)
		return joined.err();
	record_schema_ = joined->dump();
	return {};
}

result<void> host::start()
{
	libbpf_set_print(libbpf_log);
	if (auto r = ensure_mounts(); !r)
		return r;
	boot_to_epoch_ = boot_to_epoch_offset_ns();
	started_epoch_ns_ = boot_now_ns() + boot_to_epoch_;
	uint32_t self = static_cast<uint32_t>(getpid());

	// The control channel before anything else, the sinks' files above all: a second host
	// on a taken channel stops here, before it has truncated an output file of the first.
	// Every host but a "-- CMD" one can be driven by procimage-ctl.
	bool active = pipe_.starts_active();
	bool controlled = false;
	if (pipe_.command.empty()) {
		auto r = ctl_.listen(control_name_);
		if (r)
			controlled = true;
		else if (!active)
			return r.err(); // an inactive host nobody can activate is useless
		else
			spdlog::warn("{}; this host collects but cannot be controlled", r.err().msg);
	}

	keep_freed_memory while_loading;
	if (auto r = act_.load(self); !r)
		return r;
	auto v2 = cgroup::find_v2_mount();
	cgroup_names_ = std::make_unique<cgroup::names>(v2);
	if (v2)
		if (auto note = cgroup::partial_view(*v2)) {
			// it matters most to a cgroup target; else the records' paths are merely partial
			bool by_cgroup = pipe_.target.kind == target_spec::kind_t::cgroup;
			for (const auto &c : pipe_.probes)
				by_cgroup |= c.target && c.target->kind == target_spec::kind_t::cgroup;
			spdlog::log(by_cgroup ? spdlog::level::warn : spdlog::level::info, "{}", *note);
		}

	filters_abi_ = pipe_.filters.to_abi();
	// Sinks first: a probe's first record must find them ready.
	for (auto &s : sinks_) {
		s->api.size = sizeof(pi_host);
		s->api.api_major = PI_API_MAJOR;
		s->api.api_minor = PI_API_MINOR;
		s->log = named_logger(s->spec.id);
		s->api.ctx = s.get();
		s->api.log = sink_log_cb;
		s->api.boot_to_epoch_ns = boot_to_epoch_;
		s->api.interval_ms = pipe_.interval_ms;
		s->api.flush_ms = pipe_.flush_ms;
		s->api.wakeup_bytes = pipe_.wakeup_bytes;
		s->api.self_tgid = self;
		s->api.control_map_fd = s->api.targets_map_fd = -1;
		s->api.record_schema = record_schema_.c_str();
		char err[PI_ERRBUF_SIZE] = "";
		std::string cfg = s->spec.config.dump();
		try {
			s->inst = s->plugin->desc->sink->create(&s->api, cfg.c_str(), err, sizeof err);
		} catch (...) {
			s->inst = nullptr;
			snprintf(err, sizeof err, "create threw an exception");
		}
		if (!s->inst)
			return runtime_error(s->spec.json_path + ": sink " + s->plugin->name() + " " +
					     s->plugin->version() + " failed to start: " + (err[0] ? err : "no reason given"));
	}

	for (auto &p : probes_) {
		p->api.size = sizeof(pi_host);
		p->api.api_major = PI_API_MAJOR;
		p->api.api_minor = PI_API_MINOR;
		p->api.slot = p->slot;
		p->api.ctx = p.get();
		p->api.log = log_cb;
		p->api.emit = emit_cb;
		p->api.control_map_fd = act_.control_fd();
		p->api.targets_map_fd = act_.targets_fd();
		p->api.boot_to_epoch_ns = boot_to_epoch_;
		p->api.interval_ms = pipe_.interval_ms;
		p->api.flush_ms = pipe_.flush_ms;
		p->api.wakeup_bytes = pipe_.wakeup_bytes;
		p->api.self_tgid = self;
		p->api.record_schema = record_schema_.c_str();
		p->api.filters = pipe_.filters.empty() ? nullptr : &filters_abi_;
		p->api.kernel_btf = sdk::vmlinux_btf();
		const auto *d = p->plugin->desc;
		bool before_filters = d->api_major == 1 && d->api_minor < 3;
		p->host_comm = !pipe_.filters.comm.empty() && (before_filters || pipe_.filters.comm_needs_host());
		if (before_filters && (pipe_.filters.failed || pipe_.filters.min_duration_ns || !pipe_.filters.syscalls.empty()))
			p->log->warn("{} was built for plugin ABI {}.{}, before filters (1.3): --failed, --min-duration and "
				     "--syscall do not apply to it (--comm does, on its records)",
				     p->label(), d->api_major, d->api_minor);
		char err[PI_ERRBUF_SIZE] = "";
		std::string cfg = p->spec.config.dump();
		try {
			p->inst = p->ops().create(&p->api, cfg.c_str(), err, sizeof err);
		} catch (...) {
			p->inst = nullptr;
			snprintf(err, sizeof err, "create threw an exception");
		}
		if (!p->inst)
			return runtime_error(p->label() + " failed to start: " + (err[0] ? err : "no reason given"));
	}
	if (auto r = load_probes(); !r)
		return r;
	// the kernel's BTF was lent for create and load only: its 6 MB go back now
	for (auto &p : probes_)
		p->api.kernel_btf = nullptr;
	sdk::release_vmlinux_btf();
	for (auto &p : probes_) {
		p->losses = std::make_unique<loss_ledger>(p->spec.id, p->io.lost_causes, PI_LOST_CAUSES);
		if (p->io.n_ringbufs > PI_MAX_RINGBUFS)
			return runtime_error(p->label() + " reported " + std::to_string(p->io.n_ringbufs) + " ring buffers");
		for (uint32_t i = 0; i < p->io.n_ringbufs; i++) {
			p->sources.push_back(std::make_unique<ring_source>(ring_source{p.get(), i}));
			ring_source *src = p->sources.back().get();
			if (!rb_) {
				rb_ = ring_buffer__new(p->io.ringbuf_fds[i], ringbuf_cb, src, nullptr);
				if (!rb_)
					return runtime_error(p->label() + ": cannot set up its ring buffer: " +
							     std::strerror(errno));
			} else if (ring_buffer__add(rb_, p->io.ringbuf_fds[i], ringbuf_cb, src) != 0) {
				return runtime_error(p->label() + ": cannot add its ring buffer: " + std::strerror(errno));
			}
		}
	}

	epfd_ = epoll_create1(EPOLL_CLOEXEC);
	timerfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	flushfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	sigfd_ = signalfd(-1, &handled_signals(), SFD_CLOEXEC | SFD_NONBLOCK);
	if (epfd_ < 0 || timerfd_ < 0 || flushfd_ < 0 || sigfd_ < 0)
		return runtime_error(std::string("cannot set up the event loop: ") + std::strerror(errno));
	itimerspec its{};
	its.it_interval.tv_sec = pipe_.interval_ms / 1000;
	its.it_interval.tv_nsec = static_cast<long>(pipe_.interval_ms % 1000) * 1000000L;
	its.it_value = its.it_interval;
	timerfd_settime(timerfd_, 0, &its, nullptr);
	// Records are batched in the ring buffers (see pi_host.wakeup_bytes): drain them at least
	// every flush_ms. Only needed while some probe has a ring buffer.
	itimerspec fl{};
	fl.it_interval.tv_sec = pipe_.flush_ms / 1000;
	fl.it_interval.tv_nsec = static_cast<long>(pipe_.flush_ms % 1000) * 1000000L;
	fl.it_value = fl.it_interval;
	if (rb_ && pipe_.wakeup_bytes)
		timerfd_settime(flushfd_, 0, &fl, nullptr);
	auto add = [&](int fd, uint64_t tag) {
		epoll_event ev{};
		ev.events = EPOLLIN;
		ev.data.u64 = tag;
		return epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
	};
	if ((rb_ && add(ring_buffer__epoll_fd(rb_), 1) != 0) || add(timerfd_, 2) != 0 || add(sigfd_, 3) != 0 ||
	    add(flushfd_, 4) != 0)
		return runtime_error(std::string("cannot set up the event loop: ") + std::strerror(errno));

	if (!pipe_.command.empty()) {
		if (auto r = cmd_.start(pipe_.command); !r)
			return r;
		for (auto &p : probes_) {
			if (p->spec.target)
				continue; // the probe has a target of its own
			p->target = target_spec{};
			p->target.kind = target_spec::kind_t::tgid;
			p->target.ids = {static_cast<uint32_t>(cmd_.pid())};
			p->target.follow = true;
		}
	}

	deadlinefd_ = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC | TFD_NONBLOCK);
	if (deadlinefd_ < 0 || add(deadlinefd_, 6) != 0)
		return runtime_error(std::string("cannot set up the event loop: ") + std::strerror(errno));

	if (controlled && add(ctl_.fd(), 5) != 0)
		return runtime_error(std::string("cannot set up the control channel: ") + std::strerror(errno));

	if (active) {
		for (auto &p : probes_)
			if (auto r = activate(*p, p->target, nlohmann::json::object(), 0); !r)
				return r;
	} else {
		for (auto &p : probes_)
			spdlog::info("{} loaded, inactive: activate it with procimage-ctl -a", p->label());
	}

	if (!pipe_.command.empty()) {
		if (auto r = cmd_.release(); !r)
			return r;
	}

	// --duration: counted from here, once every probe that starts active collects.
	if (pipe_.duration_s > 0) {
		durationfd_ = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
		if (durationfd_ < 0 || add(durationfd_, 7) != 0)
			return runtime_error(std::string("cannot set up the event loop: ") + std::strerror(errno));
		auto ns = static_cast<uint64_t>(pipe_.duration_s * 1e9);
		itimerspec end{};
		end.it_value.tv_sec = static_cast<time_t>(ns / 1000000000ULL);
		end.it_value.tv_nsec = static_cast<long>(ns % 1000000000ULL);
		if (end.it_value.tv_sec == 0 && end.it_value.tv_nsec == 0)
			end.it_value.tv_nsec = 1; // a zero value would disarm the timer
		if (timerfd_settime(durationfd_, 0, &end, nullptr) != 0)
			return runtime_error(std::string("cannot set the --duration timer: ") + std::strerror(errno));
	}
	return {};
}

// Each probe's BPF object: opened, checked by the verifier, loaded. Most of a start is spent
// here, in the kernel's verifier and in libbpf's parse of the kernel BTF for each object, so
// the probes load at the same time, one per CPU. A plugin built before ABI 1.4 did not promise
// that its load may run beside another: it loads alone, on this thread. The first probe that
// fails, in pipeline order, is the error reported.
result<void> host::load_probes()
{
	std::vector<std::string> errs(probes_.size());
	auto load_one = [&](size_t i) {
		probe_inst &p = *probes_[i];
		p.io.size = sizeof(pi_probe_io);
		p.io.lost_map_fd = -1;
		char err[PI_ERRBUF_SIZE] = "";
		int rc;
		uint64_t t0 = boot_now_ns();
		try {
			rc = p.ops().load(p.inst, &p.io, err, sizeof err);
		} catch (...) {
			rc = PI_ERR;
			snprintf(err, sizeof err, "load threw an exception");
		}
		if (rc != PI_OK)
			errs[i] = p.label() + " failed to load: " + (err[0] ? err : "no reason given");
		else
			p.log->debug("{} loaded in {:.1f} ms", p.label(), static_cast<double>(boot_now_ns() - t0) / 1e6);
	};
	std::vector<size_t> together;
	for (size_t i = 0; i < probes_.size(); i++) {
		const auto *d = probes_[i]->plugin->desc;
		if (d->api_major == 1 && d->api_minor < 4)
			load_one(i);
		else
			together.push_back(i);
	}
	// the verifier's work: one thread per CPU
	side_by_side(together.size(), std::max(1u, std::thread::hardware_concurrency()),
		     [&](size_t k) { load_one(together[k]); });
	for (const auto &e : errs)
		if (!e.empty())
			return runtime_error(e);
	return {};
}

void host::flush_sinks()
{
	for (auto &s : sinks_) {
		if (!s->inst || s->failed || !s->plugin->desc->sink->flush)
			continue;
		int rc;
		try {
			rc = s->plugin->desc->sink->flush(s->inst);
		} catch (...) {
			rc = PI_ERR;
		}
		if (rc != PI_OK)
			sink_failed(*s, "failed to flush");
	}
}

void host::host_record(const std::vector<size_t> &sinks, const char *event, const std::string &source,
		       const std::vector<std::pair<const char *, uint64_t>> &values, uint64_t boot_ns,
		       const std::vector<std::pair<const char *, std::string>> &texts, const char *cgroup)
{
	std::vector<pi_field> fields;
	pi_field src{};
	src.key = "source";
	src.type = PI_FT_STR;
	src.v.s = source.c_str();
	fields.push_back(src);
	for (const auto &[k, v] : texts) {
		pi_field f{};
		f.key = k;
		f.type = PI_FT_STR;
		f.v.s = v.c_str();
		fields.push_back(f);
	}
	for (const auto &[k, v] : values) {
		pi_field f{};
		f.key = k;
		f.type = PI_FT_U64;
		f.v.u = v;
		fields.push_back(f);
	}
	pi_record r{};
	r.size = sizeof r;
	r.probe = "procimage";
	r.event = event;
	r.ts_ns = (boot_ns ? boot_ns : boot_now_ns()) + boot_to_epoch_;
	r.pid = static_cast<uint32_t>(getpid());
	r.tid = r.pid;
	r.cpu = -1;
	r.comm = "procimage";
	r.plugin = "procimage";
	r.cgroup = cgroup;
	r.nfields = static_cast<uint32_t>(fields.size());
	r.fields = fields.data();
	deliver(sinks, r);
}

void host::check_lost()
{
	uint64_t now = boot_now_ns();
	last_lost_check_ns_ = now;
	for (auto &p : probes_) {
		if (!p->losses)
			continue;
		std::array<uint64_t, LOST_KEYS> counts;
		if (!read_lost_counts(p->io.lost_map_fd, counts)) {
			static bool warned = false;
			if (!warned)
				spdlog::warn("cannot read a lost-record counter: {}", std::strerror(errno));
			warned = true;
			continue;
		}
		// one record per cause with new losses; one warning per cause, then one every 10 s
		for (const loss_delta &d : p->losses->update(counts, now)) {
			p->lost_total = p->losses->total();
			if (d.warn && d.unwarned == d.cause_total)
				p->log->warn("{} lost {} records: {}: {}", p->label(), d.unwarned, d.cause->id, d.cause->text);
			else if (d.warn)
				p->log->warn("{} lost {} more records: {}: {} ({} in all)", p->label(), d.unwarned, d.cause->id,
					     d.cause->text, d.cause_total);
			host_record(p->sinks, "lost", p->spec.id,
				    {{"lost", d.lost}, {"lost_total", p->lost_total}, {"cause_lost_total", d.cause_total}}, 0,
				    {{"cause", d.cause->id}});
		}
	}
	// the host's own map: key 0, every loss (descendants the target map had no room for)
	std::array<uint64_t, LOST_KEYS> core_counts;
	uint64_t core = 0;
	if (read_lost_counts(act_.lost_fd(), core_counts))
		core = core_counts[0];
	else if (static bool warned = false; !warned) {
		warned = true;
		spdlog::warn("cannot read a lost-record counter: {}", std::strerror(errno));
	}
	if (core > core_lost_) {
		uint64_t now_lost = core - core_lost_;
		core_lost_ = core;
		spdlog::warn("the target map is full: {} descendants could not be followed", now_lost);
		host_record(all_sinks(), "lost", "targets", {{"lost", now_lost}, {"lost_total", core}});
	}
}

void host::tick(bool final)
{
	uint64_t now = boot_now_ns();
	for (auto &p : probes_) {
		if (!p->inst || !p->ops().on_tick)
			continue;
		// An inactive probe writes nothing: no periodic rows before its first activation or
		// between activations (deactivate() reports the last partial interval itself), and no
		// totals at the end of a run that never activated it.
		if (final ? !p->ever_attached : !p->attached)
			continue;
		int rc;
		try {
			rc = p->ops().on_tick(p->inst, now, final ? 1 : 0);
		} catch (...) {
			rc = PI_ERR;
		}
		if (rc != PI_OK && p->errors++ < 5)
			p->log->error("{} failed in its periodic work", p->label());
	}
	check_lost();
}

void host::drain()
{
	if (!rb_)
		return;
	drain_deadline_ns_ = boot_now_ns() + DRAIN_BUDGET_NS;
	backlog_ = ring_buffer__consume(rb_) == DRAIN_PAUSED;
	drain_deadline_ns_ = 0;
}

void host::drain_all()
{
	// at the end: everything, however long it takes
	backlog_ = false;
	if (rb_)
		ring_buffer__consume(rb_);
}

int host::loop()
{
	epoll_event evs[8];
	while (!stopping_) {
		// records left by a drain that ran out of time: take the other events, then go on
		int n = epoll_wait(epfd_, evs, 8, backlog_ ? 0 : -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			spdlog::error("epoll_wait: {}", std::strerror(errno));
			return EXIT_RUNTIME;
		}
		bool consumed = false;
		for (int i = 0; i < n; i++) {
			switch (evs[i].data.u64) {
			case 1:
				drain();
				consumed = true;
				break;
			case 4: {
				uint64_t expirations;
				while (read(flushfd_, &expirations, sizeof expirations) > 0) {
				}
				drain();
				consumed = true;
				break;
			}
			case 2: {
				uint64_t expirations;
				while (read(timerfd_, &expirations, sizeof expirations) > 0) {
				}
				drain();
				tick(false);
				consumed = true;
				break;
			}
			case 5:
				serve_control();
				consumed = true;
				break;
			case 6: {
				uint64_t expirations;
				while (read(deadlinefd_, &expirations, sizeof expirations) > 0) {
				}
				expire_deadlines();
				consumed = true;
				break;
			}
			case 7:
				spdlog::info("the run's duration ({} s) has passed: stopping", pipe_.duration_s);
				stopping_ = true;
				break;
			case 3: {
				signalfd_siginfo si{};
				while (read(sigfd_, &si, sizeof si) == sizeof si) {
					if (si.ssi_signo == SIGCHLD) {
						if (cmd_.pid() > 0 && cmd_.poll_exit()) {
							spdlog::info("command exited with status {}", cmd_.shell_status());
							stopping_ = true;
						}
					} else if (cmd_.pid() > 0 && !cmd_.exited() && si.ssi_signo != SIGHUP) {
						// Let the command end first so its exit is traced; a second
						// signal stops at once.
						static int forwarded = 0;
						if (forwarded++ == 0) {
							spdlog::info("signal {}: passing it to the command", si.ssi_signo);
							cmd_.kill_with(static_cast<int>(si.ssi_signo));
						} else {
							stopping_ = true;
						}
					} else {
						spdlog::info("signal {}: stopping", si.ssi_signo);
						stopping_ = true;
					}
				}
				break;
			}
			}
		}
		if (n == 0 && backlog_) {
			drain();
			consumed = true;
		}
		if (consumed) {
			// losses are reported as they happen (within LOST_CHECK_NS), not only at a tick
			if (boot_now_ns() >= last_lost_check_ns_ + LOST_CHECK_NS)
				check_lost(); // a tick's check counts too
			flush_sinks();
			stop_collecting_without_sinks();
		}
	}
	return 0;
}

void host::shutdown()
{
	deactivate_all("shutdown");
	for (auto &p : probes_) {
		if (p->inst) {
			try {
				p->ops().destroy(p->inst);
			} catch (...) {
				p->log->error("{} threw while being destroyed", p->label());
			}
		}
		p->inst = nullptr;
	}
	for (auto &s : sinks_) {
		if (s->inst) {
			try {
				s->plugin->desc->sink->destroy(s->inst);
			} catch (...) {
				spdlog::error("sink '{}' threw while being destroyed", s->spec.id);
			}
		}
		s->inst = nullptr;
	}
	update_following();
}

// ------------------------------------------------------------------------ activation

static pi_target to_pi_target(const target_spec &t, const std::string &options)
{
	pi_target pt{};
	pt.size = sizeof pt;
	pt.kind = t.kind == target_spec::kind_t::all	    ? PI_TARGET_ALL
		  : t.kind == target_spec::kind_t::tid	    ? PI_TARGET_TID
		  : t.kind == target_spec::kind_t::cgroup ? PI_TARGET_CGROUP
							    : PI_TARGET_TGID;
	if (t.kind == target_spec::kind_t::cgroup) {
		pt.cgroup_id = t.cgroup_id;
		pt.cgroup_path = t.cgroup_dir.c_str();
	}
	pt.n_ids = static_cast<uint32_t>(t.ids.size());
	pt.ids = t.ids.data();
	pt.idle_cpu = t.idle_cpu;
	pt.include_self = t.include_self;
	pt.follow = t.follow;
	pt.options = options.c_str();
	return pt;
}

result<void> host::activate(probe_inst &p, const target_spec &given, const nlohmann::json &options,
			    uint32_t duration_s)
{
	target_spec t = given;
	if (t.kind == target_spec::kind_t::cgroup) {
		// A probe built before cgroup targets would filter with a pi_wanted() that knows
		// nothing of them, and collect nothing.
		const auto *d = p.plugin->desc;
		if (d->api_major == 1 && d->api_minor < 2)
			return usage_error(p.label() + " was built for plugin ABI " + std::to_string(d->api_major) + "." +
					   std::to_string(d->api_minor) +
					   ", before cgroup targets (1.2): rebuild it to give it --cgroup, --unit or --container");
		if (auto r = resolve_cgroup_target(t); !r)
			return r;
	}
	if (p.attached)
		deactivate(p, "retarget");
	// Shared map first (so the programs see the target from their first event), then links.
	if (auto r = act_.activate(p.slot, t); !r)
		return r.err().context(p.label());
	std::string opts = options.dump();
	pi_target pt = to_pi_target(t, opts);
	char err[PI_ERRBUF_SIZE] = "";
	uint64_t on_ns = boot_now_ns(); // collection can start with the first link attached
	int rc;
	try {
		rc = p.ops().attach(p.inst, &pt, err, sizeof err);
	} catch (...) {
		rc = PI_ERR;
		snprintf(err, sizeof err, "attach threw an exception");
	}
	if (rc != PI_OK) {
		act_.deactivate(p.slot);
		// whatever the plugin attached before failing comes off again
		char derr[PI_ERRBUF_SIZE] = "";
		try {
			p.ops().detach(p.inst, derr, sizeof derr);
		} catch (...) {
		}
		update_following();
		return runtime_error(p.label() + " failed to attach: " + (err[0] ? err : "no reason given"));
	}
	p.attached = true;
	p.ever_attached = true;
	p.target = t;
	p.options = options;
	p.activated_boot_ns = on_ns;
	p.deadline_boot_ns = duration_s ? p.activated_boot_ns + duration_s * 1000000000ULL : 0;
	p.records_at_activation = p.kernel_records;
	update_following();
	arm_deadline();
	std::string what = t.describe() + (options.empty() ? "" : " with " + opts) +
			   (duration_s ? " for " + std::to_string(duration_s) + " s" : "");
	spdlog::info("{} collecting for {}", p.label(), what);
	if (t.kind == target_spec::kind_t::cgroup)
		host_record(p.sinks, "activated", p.spec.id, {{"duration_s", duration_s}, {"cgroup_id", t.cgroup_id}}, on_ns,
			    {{"schema_version", schema::version}, {"cgroup_dir", t.cgroup_dir}},
			    cgroup_names_ ? cgroup_names_->of_id(t.cgroup_id) : nullptr);
	else
		host_record(p.sinks, "activated", p.spec.id, {{"duration_s", duration_s}}, on_ns,
			    {{"schema_version", schema::version}});
	return {};
}

// The partial interval up to off_ns, reported before the probe detaches.
void host::last_interval(probe_inst &p, uint64_t off_ns)
{
	if (!p.ops().on_tick)
		return;
	int trc;
	try {
		trc = p.ops().on_tick(p.inst, off_ns, 0);
	} catch (...) {
		trc = PI_ERR;
	}
	if (trc != PI_OK && p.errors++ < 5)
		p.log->error("{} failed to report its last interval", p.label());
}

// The probe's detach; what went wrong, or "" (safe to call from a thread of its own).
std::string host::detach_probe(probe_inst &p)
{
	char err[PI_ERRBUF_SIZE] = "";
	int rc;
	try {
		rc = p.ops().detach(p.inst, err, sizeof err);
	} catch (...) {
		rc = PI_ERR;
		snprintf(err, sizeof err, "detach threw an exception");
	}
	if (rc == PI_OK)
		return {};
	return err[0] ? err : "no reason given";
}

void host::deactivate(probe_inst &p, const char *why)
{
	if (!p.attached)
		return;
	// Off in the shared map first: collection stops at this instant, whatever detaching
	// the links costs afterwards.
	act_.deactivate(p.slot);
	uint64_t off_ns = boot_now_ns();
	// The partial interval and the queued records still belong to this activation.
	drain_all();
	last_interval(p, off_ns);
	if (auto err = detach_probe(p); !err.empty())
		p.log->warn("{} failed to detach: {}", p.label(), err);
	p.attached = false;
	p.deadline_boot_ns = 0;
	drain_all();
	spdlog::info("{} deactivated ({})", p.label(), why);
	host_record(p.sinks, "deactivated", p.spec.id, {{"records", p.kernel_records - p.records_at_activation}},
		    off_ns);
	update_following();
}

void host::deactivate_all(const char *why)
{
	std::vector<probe_inst *> on;
	for (auto &p : probes_)
		if (p->attached)
			on.push_back(p.get());
	if (on.size() < 2) {
		for (auto *p : on)
			deactivate(*p, why);
		return;
	}
	// Every probe off in the shared map at one instant, then the same steps as deactivate(),
	// with the detaches side by side.
	for (auto *p : on)
		act_.deactivate(p->slot);
	uint64_t off_ns = boot_now_ns();
	drain_all();
	for (auto *p : on)
		last_interval(*p, off_ns);
	std::vector<std::string> errs(on.size());
	parallel_detach_ = true;
	// a detach mostly waits for the kernel: one thread per probe
	side_by_side(on.size(), on.size(), [&](size_t i) { errs[i] = detach_probe(*on[i]); });
	parallel_detach_ = false;
	for (size_t i = 0; i < on.size(); i++) {
		if (!errs[i].empty())
			on[i]->log->warn("{} failed to detach: {}", on[i]->label(), errs[i]);
		on[i]->attached = false;
		on[i]->deadline_boot_ns = 0;
	}
	drain_all();
	for (auto *p : on) {
		spdlog::info("{} deactivated ({})", p->label(), why);
		host_record(p->sinks, "deactivated", p->spec.id,
			    {{"records", p->kernel_records - p->records_at_activation}}, off_ns);
	}
	update_following();
}

void host::update_following()
{
	bool any = false;
	for (auto &p : probes_)
		any |= p->attached;
	if (auto r = act_.set_following(any); !r)
		spdlog::warn("{}", r.err().msg);
}

void host::arm_deadline()
{
	uint64_t next = 0;
	for (auto &p : probes_)
		if (p->attached && p->deadline_boot_ns && (!next || p->deadline_boot_ns < next))
			next = p->deadline_boot_ns;
	itimerspec its{};
	if (next) {
		its.it_value.tv_sec = static_cast<time_t>(next / 1000000000ULL);
		its.it_value.tv_nsec = static_cast<long>(next % 1000000000ULL);
	}
	timerfd_settime(deadlinefd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

void host::expire_deadlines()
{
	uint64_t now = boot_now_ns();
	for (auto &p : probes_)
		if (p->attached && p->deadline_boot_ns && p->deadline_boot_ns <= now)
			deactivate(*p, "time limit reached");
	arm_deadline();
}

// ------------------------------------------------------------------------ control channel

void host::serve_control()
{
	auto req = ctl_.accept_request();
	if (!req) {
		spdlog::warn("control: {}", req.err().msg);
		return;
	}
	nlohmann::json reply;
	try {
		reply = handle_control(req->body);
	} catch (const std::exception &e) {
		reply = {{"ok", false}, {"error", std::string("malformed request: ") + e.what()}};
	}
	reply["host_pid"] = getpid();
	control_server::reply(req->conn, reply);
	if (reply.value("ok", false) && req->body.value("cmd", "") == "finish")
		stopping_ = true;
}

nlohmann::json host::status_json() const
{
	nlohmann::json probes = nlohmann::json::array();
	uint64_t now = boot_now_ns();
	for (const auto &p : probes_) {
		nlohmann::json j = {{"name", p->spec.id},
				    {"plugin", p->plugin->name()},
				    {"version", p->plugin->version()},
				    {"loaded", true},
				    {"active", p->attached},
				    {"records_total", p->kernel_records},
				    {"lost_total", p->lost_total},
				    {"errors", p->errors}};
		if (p->attached) {
			j["target"] = p->target.to_json();
			j["target_text"] = p->target.describe();
			j["options"] = p->options;
			j["active_for_s"] = (now - p->activated_boot_ns) / 1e9;
			j["records_since_activation"] = p->kernel_records - p->records_at_activation;
			if (p->deadline_boot_ns)
				j["remaining_s"] = p->deadline_boot_ns > now ? (p->deadline_boot_ns - now) / 1e9 : 0.0;
		}
		probes.push_back(j);
	}
	nlohmann::json sinks = nlohmann::json::array();
	for (const auto &s : sinks_)
		sinks.push_back({{"name", s->spec.id}, {"plugin", s->plugin->name()}, {"records", s->records},
				 {"failed", s->failed}});
	return {{"host_pid", getpid()},
		{"channel", control_name_},
		{"started_ns", started_epoch_ns_},
		{"probes", probes},
		{"sinks", sinks}};
}

nlohmann::json host::handle_control(const nlohmann::json &req)
{
	auto fail = [](const std::string &msg) { return nlohmann::json{{"ok", false}, {"error", msg}}; };
	std::string cmd = req.value("cmd", "");
	if (cmd == "ping")
		return {{"ok", true}};
	if (cmd == "status")
		return {{"ok", true}, {"status", status_json()}};
	if (cmd == "finish")
		return {{"ok", true}, {"changed", {"host finishing: it flushes its sinks, detaches every probe and exits"}}};
	if (cmd != "activate" && cmd != "deactivate")
		return fail("unknown command \"" + cmd + "\" (expected activate, deactivate, finish, status)");

	// Which probes: those named (an instance id, or a plugin name: every instance of it), each
	// of which must be loaded; or every loaded probe.
	std::vector<probe_inst *> chosen;
	nlohmann::json images = req.value("images", nlohmann::json::array());
	if (!images.is_array())
		return fail("images: expected an array of probe names");
	for (const auto &n : images) {
		if (!n.is_string())
			return fail("images: expected an array of probe names");
		const std::string name = n.get<std::string>();
		std::vector<probe_inst *> found;
		for (auto &p : probes_)
			if (p->spec.id == name)
				found = {p.get()};
		if (found.empty())
			for (auto &p : probes_)
				if (p->plugin->name() == name)
					found.push_back(p.get());
		if (found.empty()) {
			std::string loaded;
			for (auto &p : probes_)
				loaded += (loaded.empty() ? "" : ", ") + p->spec.id;
			return fail("the " + name + " probe is not loaded by this host (loaded: " + loaded +
				    "); start the host with it, e.g. procimage -a");
		}
		for (auto *f : found)
			if (std::find(chosen.begin(), chosen.end(), f) == chosen.end())
				chosen.push_back(f);
	}
	if (chosen.empty())
		for (auto &p : probes_)
			chosen.push_back(p.get());

	nlohmann::json changed = nlohmann::json::array();
	if (cmd == "deactivate") {
		for (auto *p : chosen) {
			if (!p->attached) {
				changed.push_back(p->spec.id + " was not active");
				continue;
			}
			deactivate(*p, "procimage-ctl -d");
			changed.push_back(p->spec.id + " deactivated");
		}
		return {{"ok", true}, {"changed", changed}};
	}

	// activate: check everything before changing anything
	auto t = parse_target(req.value("target", nlohmann::json{{"all", true}}), "target");
	if (!t)
		return fail(t.err().msg);
	if (auto r = check_target_exists(*t); !r)
		return fail(r.err().msg);
	if (auto r = resolve_cgroup_target(*t); !r) // so the reply names the cgroup's directory and id
		return fail(r.err().msg);
	const nlohmann::json &tj = req.contains("time_s") ? req["time_s"] : nlohmann::json(0);
	if (!tj.is_number_integer() || tj.get<int64_t>() < 0 || tj.get<int64_t>() > 7 * 24 * 3600)
		return fail("time: expected 0..604800 seconds, got " + tj.dump());
	int64_t duration = tj.get<int64_t>();
	nlohmann::json options = req.value("options", nlohmann::json::object());
	if (!options.is_object())
		return fail("options: expected an object keyed by probe name");
	// Options for a probe: under its instance id, else under its plugin name. Checked by the
	// plugin against its configuration before anything changes: a refused request leaves
	// the host as it was.
	std::vector<nlohmann::json> opts_of;
	for (auto *p : chosen) {
		nlohmann::json o = options.contains(p->spec.id) ? options[p->spec.id]
								 : options.value(p->plugin->name(), nlohmann::json::object());
		if (!o.is_object())
			return fail("options." + p->spec.id + ": expected an object");
		nlohmann::json merged = p->spec.config;
		merged.update(o);
		std::string text = merged.dump();
		char err[PI_ERRBUF_SIZE] = "";
		int rc;
		try {
			rc = p->ops().validate(text.c_str(), err, sizeof err);
		} catch (...) {
			rc = PI_ERR;
			snprintf(err, sizeof err, "validate threw an exception");
		}
		if (rc != PI_OK)
			return fail(p->spec.id + ": " + (err[0] ? err : "options refused"));
		opts_of.push_back(o);
	}
	// What each image did before, to put back if one of them refuses its new target (a
	// statically linked process for lock, say): a failed call leaves the host as it was.
	struct before {
		bool attached;
		target_spec target;
		nlohmann::json options;
		uint32_t seconds_left;
	};
	std::vector<before> was;
	uint64_t now = boot_now_ns();
	for (auto *p : chosen) {
		uint32_t left = 0;
		if (p->attached && p->deadline_boot_ns)
			left = p->deadline_boot_ns > now
				       ? static_cast<uint32_t>((p->deadline_boot_ns - now + 999999999ULL) / 1000000000ULL)
				       : 1;
		was.push_back({p->attached, p->target, p->options, left});
	}
	for (size_t i = 0; i < chosen.size(); i++) {
		auto *p = chosen[i];
		auto r = activate(*p, *t, opts_of[i], static_cast<uint32_t>(duration));
		if (r) {
			changed.push_back(p->spec.id + " active for " + t->describe() +
					  (duration ? " for " + std::to_string(duration) + " s" : ""));
			continue;
		}
		for (size_t k = 0; k <= i; k++) {
			auto *q = chosen[k];
			if (!was[k].attached) {
				deactivate(*q, "activation refused");
				continue;
			}
			if (auto back = activate(*q, was[k].target, was[k].options, was[k].seconds_left); !back)
				spdlog::warn("{}: could not go back to {}: {}", q->label(), was[k].target.describe(),
					     back.err().msg);
		}
		flush_sinks();
		return fail(r.err().msg);
	}
	flush_sinks();
	return {{"ok", true}, {"changed", changed}};
}

const sigset_t &host::handled_signals()
{
	static sigset_t set = [] {
		sigset_t s;
		sigemptyset(&s);
		for (int sig : {SIGINT, SIGTERM, SIGCHLD, SIGHUP})
			sigaddset(&s, sig);
		return s;
	}();
	return set;
}

int host::run(const pipeline &p, const host_options &opts)
{
	// Blocked before any plugin is loaded: a thread a plugin starts inherits the mask, so the
	// signals can only be taken from the host's signalfd (an unblocked plugin thread would
	// swallow the command's SIGCHLD).
	sigprocmask(SIG_BLOCK, &handled_signals(), nullptr);
	// A closed pipe (procimage -o jsonl | head) is a sink's write error, reported as such.
	signal(SIGPIPE, SIG_IGN);
	if (auto r = prepare(p, opts); !r) {
		spdlog::error("{}", r.err().msg);
		return r.err().code;
	}
	if (opts.check_only)
		return EXIT_OK_CODE;
	if (auto r = check_privileges(); !r) {
		spdlog::error("{}", r.err().msg);
		return r.err().code;
	}
	if (pipe_.starts_active() && pipe_.command.empty())
		for (const auto &pr : probes_)
			if (auto r = check_target_exists(pr->target); !r) {
				spdlog::error("{}: {}", pr->spec.json_path + ".target", r.err().msg);
				return r.err().code;
			}
	if (auto r = start(); !r) {
		spdlog::error("{}", r.err().msg);
		drain_all();
		flush_sinks();
		return r.err().code;
	}
	int rc = loop();
	// Detach first so nothing new arrives, then deliver what is queued.
	deactivate_all("finished");
	drain_all();
	tick(true);
	std::vector<size_t> all = all_sinks();
	for (auto &pr : probes_) {
		host_record(all, "summary", pr->spec.id,
			    {{"records", pr->kernel_records}, {"lost_total", pr->lost_total}, {"errors", pr->errors}});
		std::string causes;
		if (pr->losses)
			for (const auto &[id, n] : pr->losses->by_cause())
				causes += (causes.empty() ? " (" : ", ") + id + " " + std::to_string(n);
		if (!causes.empty())
			causes += ")";
		spdlog::info("{}: {} kernel records, {} lost{}, {} decode errors", pr->label(), pr->kernel_records,
			     pr->lost_total, causes, pr->errors);
	}
	flush_sinks();
	std::string failed_sinks;
	for (auto &s : sinks_)
		if (s->failed)
			failed_sinks += (failed_sinks.empty() ? "'" : ", '") + s->spec.id + "'";
	shutdown();
	if (rc != 0)
		return rc;
	if (cmd_.pid() > 0 && !cmd_.exited())
		cmd_.kill_with(SIGTERM);
	// An incomplete output is a failed run, whatever the command did: the exit status says so
	// and the last line says what the command's status was.
	if (!failed_sinks.empty()) {
		spdlog::error("the output is incomplete: sink {} failed{}", failed_sinks,
			      cmd_.pid() > 0 && cmd_.exited() ? "; the command exited with status " +
									std::to_string(cmd_.shell_status())
							      : std::string());
		return EXIT_RUNTIME;
	}
	if (cmd_.pid() > 0)
		return cmd_.exited() ? cmd_.shell_status() : EXIT_RUNTIME;
	return EXIT_OK_CODE;
}

} // namespace procimage::core

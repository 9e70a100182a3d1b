// SPDX-License-Identifier: Apache-2.0
//
// Header-only C++ helpers on top of the C plugin ABI (plugin_api.h). Nothing here crosses the
// boundary: the macros at the end turn a C++ class into the C descriptor and operation tables,
// catching every exception at the boundary and turning it into an error text.
#pragma once

#include <procimage/plugin_api.h>
#include <procimage/bpf/common.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <exception>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <ctime>
#include <span>
#include <utility>
#include <vector>

#include <unistd.h>

namespace procimage::sdk {

// A configuration problem; the message starts with the offending key.
struct config_error : std::runtime_error {
	using std::runtime_error::runtime_error;
};

// Now on the clock of the kernel records (bpf_ktime_get_boot_ns()), in ns.
inline uint64_t boot_now_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_BOOTTIME, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

// Does pid still name the process that started at start_ns (pid_start_ns, ns since boot; 0:
// any process)? /proc/PID/stat gives the start in clock ticks: they agree within two ticks.
// False when the process is gone. proc: the proc file system (a fake one in tests).
inline bool same_process(uint32_t pid, uint64_t start_ns, const std::string &proc = "/proc")
{
	std::string path = proc + "/" + std::to_string(pid) + "/stat";
	FILE *f = std::fopen(path.c_str(), "re");
	if (!f)
		return false;
	char buf[1024];
	size_t n = std::fread(buf, 1, sizeof buf - 1, f);
	std::fclose(f);
	buf[n] = '\0';
	// the fields after the command name (which may hold spaces and parentheses)
	const char *p = std::strrchr(buf, ')');
	if (!p)
		return false;
	if (!start_ns)
		return true;
	p++;
	for (int field = 2; field < 22 && *p; p++) // starttime is field 22
		if (*p == ' ')
			field++;
	char *end = nullptr;
	unsigned long long ticks = std::strtoull(p, &end, 10);
	long hz = sysconf(_SC_CLK_TCK);
	if (end == p || hz <= 0)
		return false;
	uint64_t tick = 1000000000ULL / static_cast<uint64_t>(hz);
	uint64_t started = ticks * tick;
	return started + 2 * tick >= start_ns && start_ns + 2 * tick >= started;
}

inline void log(const pi_host &host, int level, const std::string &msg)
{
	if (host.log)
		host.log(host.ctx, level, msg.c_str());
}

// Builds a pi_record; owns every string and array the record points to.
//
// Keys, strings and arrays are copied into a few flat buffers (a character arena, an integer
// arena) and located by offset; view() turns the offsets into the pointers of pi_record. A
// record that is kept and started again with reset() reuses those buffers with their
// capacity: a probe that does so allocates nothing per record once the buffers have grown to
// its largest record.
class record {
public:
	record(std::string_view probe, std::string_view event) : probe_(probe), event_(event) {}

	// Start a new record, keeping the storage of the previous one.
	record &reset(std::string_view probe, std::string_view event)
	{
		probe_.assign(probe);
		event_.assign(event);
		comm_.clear();
		ts_ns_ = pid_start_ns_ = cgroup_id_ = 0;
		pid_ = tid_ = 0;
		cpu_ = -1;
		text_.clear();
		nums_.clear();
		strv_.clear();
		slots_.clear();
		fields_.clear();
		return *this;
	}

	// Fill the common fields from a kernel record header.
	record &header(const pi_event_header &h, const pi_host &host)
	{
		ts_ns_ = h.ts_boot_ns + host.boot_to_epoch_ns;
		pid_ = h.pid;
		tid_ = h.tid;
		cpu_ = static_cast<int32_t>(h.cpu);
		pid_start_ns_ = h.pid_start_ns;
		cgroup_id_ = h.cgroup_id;
		comm_.assign(h.comm, strnlen(h.comm, sizeof(h.comm)));
		return *this;
	}
	record &ts(uint64_t epoch_ns) { ts_ns_ = epoch_ns; return *this; }
	record &ids(uint32_t pid, uint32_t tid) { pid_ = pid; tid_ = tid; return *this; }
	record &cpu(int32_t c) { cpu_ = c; return *this; }
	record &comm(std::string_view c) { comm_.assign(c); return *this; }
	record &pid_start(uint64_t ns) { pid_start_ns_ = ns; return *this; }
	// The task's v2 cgroup id (pi_event_header.cgroup_id); the host names the path.
	record &cgroup_id(uint64_t id) { cgroup_id_ = id; return *this; }

	record &u64(const char *key, uint64_t v, pi_field_fmt fmt = PI_FMT_PLAIN)
	{
		pi_field &f = add(key, PI_FT_U64, fmt);
		f.v.u = v;
		return *this;
	}
	record &i64(const char *key, int64_t v, pi_field_fmt fmt = PI_FMT_PLAIN)
	{
		pi_field &f = add(key, PI_FT_I64, fmt);
		f.v.i = v;
		return *this;
	}
	record &f64(const char *key, double v, pi_field_fmt fmt = PI_FMT_PLAIN)
	{
		pi_field &f = add(key, PI_FT_F64, fmt);
		f.v.d = v;
		return *this;
	}
	record &boolean(const char *key, bool v)
	{
		pi_field &f = add(key, PI_FT_BOOL, PI_FMT_PLAIN);
		f.v.u = v ? 1 : 0;
		return *this;
	}
	record &str(const char *key, std::string_view v)
	{
		add(key, PI_FT_STR, PI_FMT_PLAIN);
		slots_.back().value = put_text(v);
		return *this;
	}
	// A null pointer is an empty string.
	record &str(const char *key, const char *v) { return str(key, std::string_view(v ? v : "")); }
	record &strv(const char *key, const std::vector<std::string> &v) { return strv(key, v.begin(), v.end()); }
	record &strv(const char *key, std::span<const std::string_view> v) { return strv(key, v.begin(), v.end()); }
	// Any range of things a std::string_view is made from.
	template <typename It> record &strv(const char *key, It first, It last)
	{
		pi_field &f = add(key, PI_FT_STRV, PI_FMT_PLAIN);
		size_t start = strv_.size();
		for (; first != last; ++first)
			strv_.push_back(put_text(std::string_view(*first)));
		f.count = static_cast<uint32_t>(strv_.size() - start);
		slots_.back().value = start;
		return *this;
	}
	record &u64v(const char *key, std::span<const uint64_t> v, pi_field_fmt fmt = PI_FMT_PLAIN)
	{
		pi_field &f = add(key, PI_FT_U64V, fmt);
		f.count = static_cast<uint32_t>(v.size());
		slots_.back().value = nums_.size();
		nums_.insert(nums_.end(), v.begin(), v.end());
		return *this;
	}
	record &u64v(const char *key, std::initializer_list<uint64_t> v, pi_field_fmt fmt = PI_FMT_PLAIN)
	{
		return u64v(key, std::span<const uint64_t>(v.begin(), v.size()), fmt);
	}

	// The C view; valid while this object lives and is not modified.
	const pi_record &view()
	{
		ptrs_.resize(strv_.size());
		for (size_t i = 0; i < strv_.size(); i++)
			ptrs_[i] = text_.data() + strv_[i];
		for (size_t i = 0; i < fields_.size(); i++) {
			pi_field &f = fields_[i];
			const slot &s = slots_[i];
			f.key = text_.data() + s.key;
			switch (f.type) {
			case PI_FT_STR: f.v.s = text_.data() + s.value; break;
			case PI_FT_STRV: f.v.sv = ptrs_.data() + s.value; break;
			case PI_FT_U64V: f.v.uv = nums_.data() + s.value; break;
			default: break;
			}
		}
		rec_ = pi_record{};
		rec_.size = sizeof(pi_record);
		rec_.nfields = static_cast<uint32_t>(fields_.size());
		rec_.probe = probe_.c_str();
		rec_.event = event_.c_str();
		rec_.ts_ns = ts_ns_;
		rec_.pid = pid_;
		rec_.tid = tid_;
		rec_.cpu = cpu_;
		rec_.pid_start_ns = pid_start_ns_;
		rec_.comm = comm_.c_str();
		rec_.fields = fields_.data();
		rec_.plugin = probe_.c_str();
		rec_.cgroup_id = cgroup_id_;
		return rec_;
	}

	void emit(const pi_host &host) { host.emit(host.ctx, &view()); }

private:
	// Where a field's key and value live until view(): offsets into text_ (keys, strings),
	// strv_ (the first string of an array) or nums_ (the first integer of an array).
	struct slot {
		size_t key;
		size_t value;
	};

	size_t put_text(std::string_view v)
	{
		size_t at = text_.size();
		text_.append(v.data(), v.size());
		text_.push_back('\0');
		return at;
	}
	pi_field &add(const char *key, pi_field_type t, pi_field_fmt fmt)
	{
		slots_.push_back(slot{put_text(key ? key : ""), 0});
		pi_field &f = fields_.emplace_back();
		f = pi_field{};
		f.type = static_cast<uint16_t>(t);
		f.fmt = static_cast<uint16_t>(fmt);
		return f;
	}

	std::string probe_, event_, comm_;
	uint64_t ts_ns_ = 0, pid_start_ns_ = 0, cgroup_id_ = 0;
	uint32_t pid_ = 0, tid_ = 0;
	int32_t cpu_ = -1;
	std::string text_;                // keys and strings, each ended by a NUL
	std::vector<uint64_t> nums_;      // the integer arrays, one after the other
	std::vector<size_t> strv_;        // the strings of the string arrays (offsets into text_)
	std::vector<slot> slots_;         // one per field
	std::vector<pi_field> fields_;    // pointers set by view()
	std::vector<const char *> ptrs_;  // the string arrays' pointers, set by view()
	pi_record rec_{};
};

// Base of a probe written in C++. Every method may throw; the trampolines below turn an
// exception into PI_ERR plus its message.
class probe {
public:
	explicit probe(const pi_host &host) : host_(host) {}
	virtual ~probe() = default;
	virtual void load(pi_probe_io &io) = 0;
	virtual void attach(const pi_target &target) = 0;
	virtual void detach() = 0;
	virtual void on_data(uint32_t index, const void *data, size_t len) = 0;
	virtual void on_tick(uint64_t /*now_boot_ns*/, bool /*final*/) {}

	const pi_host &host() const { return host_; }
	// The reason a callback without an error buffer failed, through the host's log (the first
	// few of them: a stream of bad records must not flood the log).
	void report_failure(const char *what, const char *msg)
	{
		if (failures_logged_ < 5) {
			failures_logged_++;
			log(host_, PI_LOG_ERROR, std::string(what) + ": " + msg);
		}
	}

private:
	pi_host host_;
	unsigned failures_logged_ = 0;
};

class sink {
public:
	explicit sink(const pi_host &host) : host_(host) {}
	virtual ~sink() = default;
	virtual void write(const pi_record &rec) = 0;
	virtual void flush() {}

	const pi_host &host() const { return host_; }
	void report_failure(const char *what, const char *msg)
	{
		if (failures_logged_ < 5) {
			failures_logged_++;
			log(host_, PI_LOG_ERROR, std::string(what) + ": " + msg);
		}
	}

private:
	pi_host host_;
	unsigned failures_logged_ = 0;
};

namespace detail {

inline void set_err(char *err, size_t len, const char *msg)
{
	if (err && len) {
		std::snprintf(err, len, "%s", msg);
	}
}

template <typename F> int guard(char *err, size_t len, F &&f)
{
	try {
		f();
		return PI_OK;
	} catch (const std::exception &e) {
		set_err(err, len, e.what());
	} catch (...) {
		set_err(err, len, "unknown exception");
	}
	return PI_ERR;
}

// For callbacks that have no error buffer: the reason goes to the host's log.
template <typename T, typename F> int guard_logged(T *self, const char *what, F &&f)
{
	char msg[PI_ERRBUF_SIZE] = "";
	int rc = guard(msg, sizeof msg, std::forward<F>(f));
	if (rc != PI_OK)
		self->report_failure(what, msg);
	return rc;
}

// The kernel BTF the host lends this plugin's probes while any of them is being created or
// loaded (pi_host.kernel_btf, ABI 1.4), seen by vmlinux_btf() (procimage/kernel_features.hpp);
// null when none is. The host loads several probes at once, each on its thread, and frees its
// BTF only once every load has returned: while a loan lasts the pointer is valid on any
// thread, and the last loan to end takes it back.
struct btf_loans {
	std::mutex m;
	unsigned open = 0;
	std::atomic<const struct btf *> lent{nullptr};
};
inline btf_loans &kernel_btf_loans()
{
	static btf_loans l;
	return l;
}
inline const struct btf *shared_kernel_btf()
{
	return kernel_btf_loans().lent.load(std::memory_order_acquire);
}

// For the length of a create or load: the host's BTF, when its pi_host has the field.
class lent_kernel_btf {
public:
	explicit lent_kernel_btf(const pi_host &host)
	{
		if (host.size < offsetof(pi_host, kernel_btf) + sizeof host.kernel_btf || !host.kernel_btf)
			return;
		auto &l = kernel_btf_loans();
		std::lock_guard<std::mutex> lock(l.m);
		if (l.open++ == 0)
			l.lent.store(host.kernel_btf, std::memory_order_release);
		held_ = true;
	}
	~lent_kernel_btf()
	{
		if (!held_)
			return;
		auto &l = kernel_btf_loans();
		std::lock_guard<std::mutex> lock(l.m);
		if (--l.open == 0)
			l.lent.store(nullptr, std::memory_order_release);
	}
	lent_kernel_btf(const lent_kernel_btf &) = delete;
	lent_kernel_btf &operator=(const lent_kernel_btf &) = delete;

private:
	bool held_ = false;
};

template <typename P> struct probe_tramp {
	static int validate(const char *cfg, char *err, size_t len)
	{
		return guard(err, len, [&] { P::validate(cfg ? cfg : "{}"); });
	}
	static void *create(const pi_host *host, const char *cfg, char *err, size_t len)
	{
		P *p = nullptr;
		lent_kernel_btf lent(*host);
		guard(err, len, [&] { p = new P(*host, cfg ? cfg : "{}"); });
		return p;
	}
	static int load(void *inst, pi_probe_io *io, char *err, size_t len)
	{
		auto *p = static_cast<P *>(inst);
		lent_kernel_btf lent(p->host());
		return guard(err, len, [&] { p->load(*io); });
	}
	static int attach(void *inst, const pi_target *target, char *err, size_t len)
	{
		return guard(err, len, [&] { static_cast<P *>(inst)->attach(*target); });
	}
	static int detach(void *inst, char *err, size_t len)
	{
		return guard(err, len, [&] { static_cast<P *>(inst)->detach(); });
	}
	static int on_data(void *inst, uint32_t index, const void *data, size_t size)
	{
		auto *p = static_cast<P *>(inst);
		return guard_logged(p, "decoding a record", [&] { p->on_data(index, data, size); });
	}
	static int on_tick(void *inst, uint64_t now, int final)
	{
		auto *p = static_cast<P *>(inst);
		return guard_logged(p, "periodic work", [&] { p->on_tick(now, final != 0); });
	}
	static void destroy(void *inst)
	{
		try {
			delete static_cast<P *>(inst);
		} catch (...) {
		}
	}
};

template <typename S> struct sink_tramp {
	static int validate(const char *cfg, char *err, size_t len)
	{
		return guard(err, len, [&] { S::validate(cfg ? cfg : "{}"); });
	}
	static void *create(const pi_host *host, const char *cfg, char *err, size_t len)
	{
		S *s = nullptr;
		guard(err, len, [&] { s = new S(*host, cfg ? cfg : "{}"); });
		return s;
	}
	static int write(void *inst, const pi_record *rec)
	{
		auto *s = static_cast<S *>(inst);
		return guard_logged(s, "write", [&] { s->write(*rec); });
	}
	static int flush(void *inst)
	{
		auto *s = static_cast<S *>(inst);
		return guard_logged(s, "flush", [&] { s->flush(); });
	}
	static void destroy(void *inst)
	{
		try {
			delete static_cast<S *>(inst);
		} catch (...) {
		}
	}
};

} // namespace detail
} // namespace procimage::sdk

// Define the descriptor and entry point of a probe implemented by class CLS, which must
// derive from procimage::sdk::probe, have a constructor (const pi_host&, const std::string&
// config) and a static validate(const std::string& config) that throws config_error.
// SCHEMA is the text of the probe's record schema (docs/plugin-abi.md, "Record schema"):
// CMake's procimage_record_schema() turns a records.json into a header that defines it.
#define PROCIMAGE_DEFINE_PROBE(CLS, NAME, VERSION, DESCRIPTION)                                  \
	PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(CLS, NAME, VERSION, DESCRIPTION, nullptr)

#define PROCIMAGE_DEFINE_PROBE_WITH_SCHEMA(CLS, NAME, VERSION, DESCRIPTION, SCHEMA)               \
	namespace {                                                                              \
	using pi_tramp_ = procimage::sdk::detail::probe_tramp<CLS>;                              \
	const pi_probe_ops pi_probe_ops_ = {                                                     \
		sizeof(pi_probe_ops), pi_tramp_::validate, pi_tramp_::create, pi_tramp_::load,    \
		pi_tramp_::attach,    pi_tramp_::detach,   pi_tramp_::on_data, pi_tramp_::on_tick, \
		pi_tramp_::destroy,                                                               \
	};                                                                                       \
	const pi_plugin_desc pi_desc_ = {                                                        \
		sizeof(pi_plugin_desc), PI_PLUGIN_API_MAJOR, PI_PLUGIN_API_MINOR, PI_KIND_PROBE,   \
		NAME, VERSION, DESCRIPTION, &pi_probe_ops_, nullptr, SCHEMA,                      \
	};                                                                                       \
	const pi_plugin_desc *pi_describe_() { return &pi_desc_; }                                \
	}                                                                                        \
	PROCIMAGE_PLUGIN_ENTRY(pi_describe_)

#define PROCIMAGE_DEFINE_SINK(CLS, NAME, VERSION, DESCRIPTION)                                   \
	namespace {                                                                              \
	using pi_tramp_ = procimage::sdk::detail::sink_tramp<CLS>;                               \
	const pi_sink_ops pi_sink_ops_ = {                                                       \
		sizeof(pi_sink_ops), pi_tramp_::validate, pi_tramp_::create,                      \
		pi_tramp_::write,    pi_tramp_::flush,    pi_tramp_::destroy,                     \
	};                                                                                       \
	const pi_plugin_desc pi_desc_ = {                                                        \
		sizeof(pi_plugin_desc), PI_PLUGIN_API_MAJOR, PI_PLUGIN_API_MINOR, PI_KIND_SINK,    \
		NAME, VERSION, DESCRIPTION, nullptr, &pi_sink_ops_, nullptr,                      \
	};                                                                                       \
	const pi_plugin_desc *pi_describe_() { return &pi_desc_; }                                \
	}                                                                                        \
	PROCIMAGE_PLUGIN_ENTRY(pi_describe_)

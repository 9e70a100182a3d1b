// SPDX-License-Identifier: Apache-2.0
//
// Deliberately broken plugins for the host's tests, one per VARIANT:
//   1 sink built for another major ABI (PI_PLUGIN_API_MAJOR=2)
//   2 sink built for a newer minor ABI (PI_PLUGIN_API_MINOR=99)
//   3 sink whose write throws a C++ exception straight through the C boundary
//   4 probe whose create throws straight through the C boundary
//   5 a shared object with no procimage entry point
//   6 a working sink built for ABI 1.0 (PI_PLUGIN_API_MINOR=0): a 1.x host keeps loading it
//   7 a probe built for ABI 1.1 (PI_PLUGIN_API_MINOR=1): before cgroup targets and filters. It
//     does nothing, unless its configuration has "emit": then at its first tick it emits one
//     "tick" record for a thread named wlf-alpha and one for a thread named other
//   8 a probe that tells how it was loaded (built for the current ABI as probe_loads, and for
//     ABI 1.3 as probe_loads_1_3): its load sleeps 300 ms; at its first tick it emits one
//     "loaded" record with the thread the load ran on, when it began and ended
//     (CLOCK_MONOTONIC ns) and the kernel BTF the host lent it (its address, 0 for none),
//     during the load and at the tick
#include <procimage/plugin_api.h>

#include <cstring>
#include <ctime>
#include <stdexcept>
#include <unistd.h>

#if VARIANT == 1 || VARIANT == 2 || VARIANT == 3 || VARIANT == 6
namespace {
int validate(const char *, char *, size_t) { return PI_OK; }
int dummy;
void *create(const pi_host *, const char *, char *, size_t) { return &dummy; }
int write_rec(void *, const pi_record *)
{
#if VARIANT == 3
	throw std::runtime_error("sink exploded");
#else
	return PI_OK;
#endif
}
int flush(void *) { return PI_OK; }
void destroy(void *) {}
const pi_sink_ops ops = {sizeof(pi_sink_ops), validate, create, write_rec, flush, destroy};
const pi_plugin_desc desc = {sizeof(pi_plugin_desc), PI_PLUGIN_API_MAJOR, PI_PLUGIN_API_MINOR, PI_KIND_SINK,
			     PLUGIN_NAME, "0.0.1", "test plugin", nullptr, &ops};
const pi_plugin_desc *describe() { return &desc; }
} // namespace
PROCIMAGE_PLUGIN_ENTRY(describe);
#elif VARIANT == 4 || VARIANT == 7
namespace {
int validate(const char *, char *, size_t) { return PI_OK; }
#if VARIANT == 4
void *create(const pi_host *, const char *, char *, size_t) { throw std::runtime_error("probe exploded"); }
int on_tick(void *, uint64_t, int) { return PI_OK; }
void destroy(void *) {}
#else
struct instance {
	const pi_host *host;
	bool emit;
};
void *create(const pi_host *host, const char *config, char *, size_t)
{
	return new instance{host, std::strstr(config, "\"emit\"") != nullptr};
}
int on_tick(void *inst, uint64_t, int)
{
	auto *in = static_cast<instance *>(inst);
	if (!in->emit)
		return PI_OK;
	in->emit = false;
	pi_field f = {"n", PI_FT_U64, PI_FMT_PLAIN, 0, {}};
	f.v.u = 1;
	const char *comms[] = {"wlf-alpha", "other"};
	for (uint32_t i = 0; i < 2; i++) {
		pi_record r{};
		r.size = sizeof r;
		r.nfields = 1;
		r.probe = PLUGIN_NAME;
		r.event = "tick";
		r.pid = r.tid = 4000000 + i;
		r.cpu = -1;
		r.comm = comms[i];
		r.fields = &f;
		in->host->emit(in->host->ctx, &r);
	}
	return PI_OK;
}
void destroy(void *inst) { delete static_cast<instance *>(inst); }
#endif
int load(void *, pi_probe_io *, char *, size_t) { return PI_OK; }
int attach(void *, const pi_target *, char *, size_t) { return PI_OK; }
int detach(void *, char *, size_t) { return PI_OK; }
int on_data(void *, uint32_t, const void *, size_t) { return PI_OK; }
const pi_probe_ops ops = {sizeof(pi_probe_ops), validate, create, load, attach, detach, on_data, on_tick, destroy};
const pi_plugin_desc desc = {sizeof(pi_plugin_desc), PI_PLUGIN_API_MAJOR, PI_PLUGIN_API_MINOR, PI_KIND_PROBE,
			     PLUGIN_NAME, "0.0.1", "test plugin", &ops, nullptr};
const pi_plugin_desc *describe() { return &desc; }
} // namespace
PROCIMAGE_PLUGIN_ENTRY(describe);
#elif VARIANT == 8
namespace {
uint64_t mono_ns()
{
	timespec ts{};
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return static_cast<uint64_t>(ts.tv_sec) * 1000000000ULL + static_cast<uint64_t>(ts.tv_nsec);
}
struct instance {
	const pi_host *host;
	uint64_t tid = 0, begin = 0, end = 0, btf = 0, btf_after = 0;
	bool sent = false;
};
int validate(const char *, char *, size_t) { return PI_OK; }
void *create(const pi_host *host, const char *, char *, size_t) { return new instance{host}; }
int load(void *inst, pi_probe_io *, char *, size_t)
{
	auto *in = static_cast<instance *>(inst);
	in->tid = static_cast<uint64_t>(gettid());
#if PI_PLUGIN_API_MINOR >= 4
	if (in->host->size >= offsetof(pi_host, kernel_btf) + sizeof in->host->kernel_btf)
		in->btf = reinterpret_cast<uintptr_t>(in->host->kernel_btf);
#endif
	in->begin = mono_ns();
	usleep(300 * 1000);
	in->end = mono_ns();
	return PI_OK;
}
int on_tick(void *inst, uint64_t, int)
{
	auto *in = static_cast<instance *>(inst);
	if (in->sent)
		return PI_OK;
	in->sent = true;
#if PI_PLUGIN_API_MINOR >= 4
	if (in->host->size >= offsetof(pi_host, kernel_btf) + sizeof in->host->kernel_btf)
		in->btf_after = reinterpret_cast<uintptr_t>(in->host->kernel_btf);
#endif
	const char *names[] = {"load_tid", "load_begin_ns", "load_end_ns", "kernel_btf", "kernel_btf_after"};
	uint64_t values[] = {in->tid, in->begin, in->end, in->btf, in->btf_after};
	pi_field f[5];
	for (int i = 0; i < 5; i++) {
		f[i] = pi_field{names[i], PI_FT_U64, PI_FMT_PLAIN, 0, {}};
		f[i].v.u = values[i];
	}
	pi_record r{};
	r.size = sizeof r;
	r.nfields = 5;
	r.probe = PLUGIN_NAME;
	r.event = "loaded";
	r.pid = in->host->self_tgid;
	r.tid = in->host->self_tgid;
	r.cpu = -1;
	r.comm = "procimage";
	r.fields = f;
	in->host->emit(in->host->ctx, &r);
	return PI_OK;
}
void destroy(void *inst) { delete static_cast<instance *>(inst); }
int attach(void *, const pi_target *, char *, size_t) { return PI_OK; }
int detach(void *, char *, size_t) { return PI_OK; }
int on_data(void *, uint32_t, const void *, size_t) { return PI_OK; }
const pi_probe_ops ops = {sizeof(pi_probe_ops), validate, create, load, attach, detach, on_data, on_tick, destroy};
const char *const schema = R"({"records": {"loaded": {
	"description": "How the host loaded this probe (a test plugin).", "about": "host",
	"properties": {
		"load_tid": {"type": "integer", "minimum": 1, "description": "The thread its load ran on."},
		"load_begin_ns": {"type": "integer", "minimum": 0, "description": "CLOCK_MONOTONIC when the load began."},
		"load_end_ns": {"type": "integer", "minimum": 0, "description": "CLOCK_MONOTONIC when the load ended."},
		"kernel_btf": {"type": "integer", "minimum": 0, "description": "pi_host.kernel_btf during the load, 0 when none."},
		"kernel_btf_after": {"type": "integer", "minimum": 0, "description": "pi_host.kernel_btf at the first tick."}}}}})";
const pi_plugin_desc desc = {sizeof(pi_plugin_desc), PI_PLUGIN_API_MAJOR, PI_PLUGIN_API_MINOR, PI_KIND_PROBE,
			     PLUGIN_NAME, "0.0.1", "test plugin", &ops, nullptr, schema};
const pi_plugin_desc *describe() { return &desc; }
} // namespace
PROCIMAGE_PLUGIN_ENTRY(describe);
#else
extern "C" __attribute__((visibility("default"))) int not_a_plugin() { return 42; }
#endif

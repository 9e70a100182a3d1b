// SPDX-License-Identifier: Apache-2.0
// The stack symbolizer (core/symbolize) against binaries whose functions are known: this test
// program itself (a PIE executable), libc (a shared library), a forked child that has exited by
// the time its addresses are resolved, and canned kallsyms and maps text.
#include "symbolize.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace sym = procimage::symbolize;
namespace t = procimage::test;

extern "C" __attribute__((noinline)) int pi_symbolize_marker(int x)
{
	// a body long enough to hold an address inside it
	volatile int v = x;
	for (int i = 0; i < 3; i++)
		v = v * 3 + i;
	return v;
}

namespace pi_symbolize_test {
__attribute__((noinline)) long marker_cpp(long x, const char *s)
{
	volatile long v = x + (s ? s[0] : 0);
	return v * 7;
}
} // namespace pi_symbolize_test

// data objects: a static one in .bss, a global one in .data, a struct with a lock inside
static pthread_mutex_t pi_static_lock = PTHREAD_MUTEX_INITIALIZER;
struct pi_pool {
	long counters[8];
	pthread_mutex_t lock;
};
extern "C" {
pi_pool pi_global_pool = {{1, 2, 3, 4, 5, 6, 7, 8}, PTHREAD_MUTEX_INITIALIZER};
}

namespace {

uint64_t addr_of(const void *p) { return reinterpret_cast<uint64_t>(p); }

// ns since boot at which this process started, as the probes' records carry it
uint64_t own_start_ns()
{
	std::string s = t::read_file("/proc/self/stat");
	auto rp = s.rfind(')');
	std::istringstream in(s.substr(rp + 2));
	std::string f;
	for (int i = 3; i <= 22; i++)
		in >> f;
	return std::stoull(f) * (1000000000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));
}

} // namespace

TEST_CASE("symbolize: a function of this PIE executable, by its run-time address")
{
	Dl_info info{};
	REQUIRE(dladdr(reinterpret_cast<void *>(&pi_symbolize_marker), &info) != 0);
	// a PIE is loaded at a random base: the run-time address is not the file's address
	REQUIRE(info.dli_fbase != nullptr);
	CHECK(addr_of(info.dli_fbase) != 0x400000);

	sym::symbolizer s;
	REQUIRE(s.capture(getpid(), own_start_ns()));
	uint64_t a = addr_of(reinterpret_cast<void *>(&pi_symbolize_marker));
	auto r = s.resolve_user(getpid(), own_start_ns(), 0, a + 4);
	CHECK(r.name == "pi_symbolize_marker");
	CHECK(r.offset == 4);
	CHECK(r.module == "unit_tests");
	CHECK(sym::frame_text(r, a + 4) == "pi_symbolize_marker+0x4");

	SECTION("C++ names come back demangled")
	{
		uint64_t c = addr_of(reinterpret_cast<void *>(&pi_symbolize_test::marker_cpp));
		auto rc = s.resolve_user(getpid(), own_start_ns(), 0, c);
		CHECK(rc.name == "pi_symbolize_test::marker_cpp(long, char const*)");
		CHECK(rc.offset == 0);
	}
	SECTION("a stack, innermost first, as text")
	{
		uint64_t ips[] = {a + 1, addr_of(reinterpret_cast<void *>(&pi_symbolize_test::marker_cpp)) + 2, 8};
		auto st = s.user_stack(getpid(), own_start_ns(), 0, ips, 3);
		REQUIRE(st.size() == 3);
		CHECK(st[0] == "pi_symbolize_marker+0x1");
		CHECK(st[1] == "pi_symbolize_test::marker_cpp(long, char const*)+0x2");
		CHECK(st[2] == "0x8"); // in no mapping
	}
}

TEST_CASE("symbolize: variables of this executable by their run-time address; the heap has no name")
{
	sym::symbolizer s;
	uint64_t start = own_start_ns();
	auto r = s.resolve_data(getpid(), start, addr_of(&pi_static_lock));
	CHECK(r.name == "pi_static_lock"); // (its symbol, _ZL14pi_static_lock, demangled)
	CHECK(r.offset == 0);
	CHECK(r.module == "unit_tests");
	// a member of a larger variable: the variable and the offset
	auto m = s.resolve_data(getpid(), start, addr_of(&pi_global_pool.lock));
	CHECK(m.name == "pi_global_pool");
	CHECK(m.offset == offsetof(pi_pool, lock));
	// a lock on the heap, or on the stack, is no variable of any file
	auto *heap = new pthread_mutex_t;
	pthread_mutex_t on_stack;
	CHECK(s.resolve_data(getpid(), start, addr_of(heap)).name.empty());
	CHECK(s.resolve_data(getpid(), start, addr_of(&on_stack)).name.empty());
	delete heap;
	// another process's start time: not this process
	CHECK(s.resolve_data(getpid(), start + 10000000000ULL, addr_of(&pi_static_lock)).name.empty());
}

TEST_CASE("symbolize: a function of a shared library (libc), wherever it was loaded")
{
	void *q = dlsym(RTLD_DEFAULT, "qsort");
	REQUIRE(q);
	Dl_info info{};
	REQUIRE(dladdr(q, &info) != 0);
	sym::symbolizer s;
	REQUIRE(s.capture(getpid(), 0));
	auto r = s.resolve_user(getpid(), 0, 0, addr_of(q));
	INFO("resolved to " << r.name << " in " << r.module);
	// libc exports some functions under several names: any name that is this address will do
	REQUIRE(!r.name.empty());
	CHECK(dlsym(RTLD_DEFAULT, r.name.c_str()) == q);
	CHECK(r.offset == 0);
	// the file itself, as the process's mappings name it (the loader may know it by a link:
	// libasan.so.8 for libasan.so.8.0.0)
	char real[PATH_MAX];
	REQUIRE(realpath(info.dli_fname, real) != nullptr);
	const std::string file = real;
	CHECK(r.module == file.substr(file.rfind('/') + 1));
}

TEST_CASE("symbolize: a process that exited resolves from the mappings captured while it lived")
{
	int pipefd[2];
	REQUIRE(pipe(pipefd) == 0);
	pid_t child = fork();
	REQUIRE(child >= 0);
	if (child == 0) {
		// the same image as the parent (fork): wait until the parent has looked, then exit
		close(pipefd[1]);
		char c;
		while (read(pipefd[0], &c, 1) < 0) {
		}
		_exit(pi_symbolize_marker(1) & 0);
	}
	close(pipefd[0]);
	std::string stat = t::read_file("/proc/" + std::to_string(child) + "/stat");
	auto rp = stat.rfind(')');
	std::istringstream in(stat.substr(rp + 2));
	std::string f;
	for (int i = 3; i <= 22; i++)
		in >> f;
	uint64_t start = std::stoull(f) * (1000000000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK)));

	sym::symbolizer s;
	CHECK_FALSE(s.capture(child, start + 5000000000ULL)); // another start time: another process
	REQUIRE(s.capture(child, start));
	close(pipefd[1]);
	int status = 0;
	REQUIRE(waitpid(child, &status, 0) == child);
	REQUIRE(access(("/proc/" + std::to_string(child)).c_str(), F_OK) != 0); // gone

	uint64_t a = addr_of(reinterpret_cast<void *>(&pi_symbolize_marker)) + 3;
	auto r = s.resolve_user(child, start, 0, a);
	CHECK(r.name == "pi_symbolize_marker");
	CHECK(r.offset == 3);
	// a process never captured, and gone: nothing to go on, and no error
	sym::symbolizer fresh;
	CHECK(fresh.resolve_user(child, start, 0, a).name.empty());
	CHECK(fresh.stats().gone >= 1);
}

TEST_CASE("symbolize: a capture parses nothing; each binary is parsed once, however many processes map it")
{
	sym::symbolizer s;
	REQUIRE(s.capture(getpid(), 0, 1));
	CHECK(s.stats().images == 0); // held open only: a capture stays cheap
	CHECK(s.stats().held >= 2);   // this program and libc at least
	uint64_t here = addr_of(reinterpret_cast<void *>(&pi_symbolize_marker));
	uint64_t in_libc = addr_of(reinterpret_cast<void *>(&getpid));
	CHECK(s.resolve_user(getpid(), 0, 1, here).name == "pi_symbolize_marker");
	CHECK(!s.resolve_user(getpid(), 0, 1, in_libc).name.empty());
	uint64_t images = s.stats().images;
	CHECK(images == 2);
	REQUIRE(s.capture(getpid(), 0, 2));
	CHECK(s.resolve_user(getpid(), 0, 2, here).name == "pi_symbolize_marker");
	CHECK(!s.resolve_user(getpid(), 0, 2, in_libc).name.empty());
	CHECK(s.stats().images == images);
	CHECK(s.stats().captures == 2);
	s.trim(1);
	CHECK(s.known(getpid(), 0, 2));
	CHECK_FALSE(s.known(getpid(), 0, 1));
}

TEST_CASE("symbolize: kallsyms text symbols, with module names dropped")
{
	t::temp_dir d;
	t::write_file(d.file("kallsyms"), "0000000000000000 A fixed_percpu_data\n"
					  "ffffffff81000000 T _stext\n"
					  "ffffffff81001000 t do_one_initcall\n"
					  "ffffffff81002000 D some_data\n"
					  "ffffffffc0000000 t nft_do_chain\t[nf_tables]\n");
	sym::kernel_symbols k;
	REQUIRE(k.load(d.file("kallsyms")));
	CHECK(k.size() == 3);
	auto r = k.resolve(0xffffffff81001010ULL);
	CHECK(r.name == "do_one_initcall");
	CHECK(r.offset == 0x10);
	CHECK(sym::frame_text(r, 0) == "do_one_initcall+0x10");
	// the data symbol is not a function: the text symbol before it still covers the address
	CHECK(k.resolve(0xffffffff81002008ULL).name == "do_one_initcall");
	CHECK(k.resolve(0xffffffffc0000004ULL).name == "nft_do_chain");
	CHECK(k.resolve(0x1000).name.empty());

	// out of address order (a module listed before the core kernel), and an alias: the table
	// is sorted, and an address keeps the first name listed for it
	t::write_file(d.file("unordered"), "ffffffffc0001000 t mod_fn\t[mod]\n"
					    "ffffffff81000000 T _stext\n"
					    "ffffffff81000100 T first_name\n"
					    "ffffffff81000100 T alias_name\n"
					    "ffffffff81000000 t _text_alias\n");
	sym::kernel_symbols u;
	REQUIRE(u.load(d.file("unordered")));
	CHECK(u.size() == 3);
	CHECK(u.resolve(0xffffffff81000050ULL).name == "_stext");
	CHECK(u.resolve(0xffffffff81000104ULL).name == "first_name");
	CHECK(u.resolve(0xffffffff81000104ULL).offset == 4);
	CHECK(u.resolve(0xffffffffc0001008ULL).name == "mod_fn");
	CHECK(u.resolve(0xffffffff80ffffffULL).name.empty());

	sym::kernel_symbols hidden; // kptr_restrict: every address reads as zero
	t::write_file(d.file("zero"), "0000000000000000 T _stext\n0000000000000000 t do_one_initcall\n");
	CHECK_FALSE(hidden.load(d.file("zero")));
}

TEST_CASE("symbolize: /proc/PID/maps lines, executable mappings only")
{
	auto m = sym::parse_maps(
		"55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234   /usr/bin/prog\n"
		"55d0c0a01000-55d0c0a05000 r-xp 00001000 fd:01 1234   /usr/bin/prog\n"
		"7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
		"7f1000028000-7f100019d000 r-xp 00028000 08:02 98765  /usr/lib/x86_64-linux-gnu/libc.so.6\n"
		"7f2000000000-7f2000001000 r-xp 00000000 08:02 555    /tmp/old binary (deleted)\n"
		"7ffd1e5f0000-7ffd1e5f2000 r-xp 00000000 00:00 0      [vdso]\n");
	REQUIRE(m.size() == 4);
	CHECK(m[0].start == 0x55d0c0a01000ULL);
	CHECK(m[0].end == 0x55d0c0a05000ULL);
	CHECK(m[0].offset == 0x1000);
	CHECK(m[0].inode == 1234);
	CHECK(m[0].path == "/usr/bin/prog");
	CHECK(m[1].path == "/usr/lib/x86_64-linux-gnu/libc.so.6");
	CHECK(m[2].path == "/tmp/old binary (deleted)");
	CHECK(m[3].path == "[vdso]");
}

TEST_CASE("symbolize: frames without a symbol name their module and offset")
{
	sym::symbol s;
	s.module = "libfoo.so";
	s.offset = 0x2a1b0;
	CHECK(sym::frame_text(s, 0x7f0000002a1b0ULL) == "[libfoo.so]+0x2a1b0");
	CHECK(sym::frame_text(sym::symbol{}, 0x7f00deadbeefULL) == "0x7f00deadbeef");
}

TEST_CASE("symbolize: a separate debug file is found by its .gnu_debuglink name, and no debuginfod client is "
	  "loaded when no server is set")
{
	// Two stripped copies of this test program: one with its debug file beside it, in .debug/ as
	// the debuglink names it, one with none anywhere. Stripped, the marker has no symbol (it is
	// not exported), so its name can only come from the debug file.
	::unsetenv("DEBUGINFOD_URLS");
	t::temp_dir d;
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	REQUIRE(n > 0);
	self[n] = 0;
	REQUIRE(mkdir(d.file(".debug").c_str(), 0755) == 0);
	const std::string with = d.file("with_link"), without = d.file("without_debug");
	const std::string debug = d.file(".debug/with_link.debug");
	auto cmd = [](const std::vector<std::string> &argv) {
		auto r = t::run(argv);
		INFO(argv[0] << ": " << r.err);
		REQUIRE(r.status == 0);
	};
	cmd({"objcopy", "--only-keep-debug", self, debug});
	// a build-id that /usr/lib/debug/.build-id cannot know, so the search goes by the link
	cmd({"objcopy", "--strip-all", "--remove-section=.note.gnu.build-id", "--add-gnu-debuglink=" + debug, self, with});
	cmd({"objcopy", "--strip-all", self, without});

	Dl_info info{};
	REQUIRE(dladdr(reinterpret_cast<void *>(&pi_symbolize_marker), &info) != 0);
	uint64_t vaddr = addr_of(reinterpret_cast<void *>(&pi_symbolize_marker)) - addr_of(info.dli_fbase);

	std::string err;
	auto img = sym::elf_image::open(with, "with_link", &err);
	INFO(err);
	REQUIRE(img);
	auto r = img->resolve_vaddr(vaddr + 2);
	CHECK(r.name == "pi_symbolize_marker");
	CHECK(r.offset == 2);

	auto bare = sym::elf_image::open(without, "without_debug", &err);
	REQUIRE(bare);
	CHECK(bare->resolve_vaddr(vaddr + 2).name != "pi_symbolize_marker");
	// libdw's own search would have fallen back to a debuginfod client here, loading
	// libdebuginfod (and curl, GnuTLS, OpenSSL) with no server to ask
	CHECK(t::read_file("/proc/self/maps").find("libdebuginfod") == std::string::npos);
}

// SPDX-License-Identifier: Apache-2.0
// core/cgroup: the v2 mount from a mountinfo file, systemd units and containers found in a fake
// cgroup tree, a process's v2 cgroup from a fake /proc.
#include "cgroup.hpp"
#include "cgroup_names.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

#include <sys/stat.h>
#include <unistd.h>

namespace cg = procimage::core::cgroup;
namespace t = procimage::test;
namespace fs = std::filesystem;

namespace {

const std::string ID_A = "3f2a9c1be0d4c5a6b7e8f90112233445566778899aabbccddeeff00112233445";
const std::string ID_B = "3f2b000000000000000000000000000000000000000000000000000000000001";
const std::string ID_C = "c0ffee0000000000000000000000000000000000000000000000000000000002";
const std::string ID_D = "d00d000000000000000000000000000000000000000000000000000000000003";
const std::string ID_E = "e0e0000000000000000000000000000000000000000000000000000000000004";

// A cgroup tree as systemd and the container runtimes lay it out.
void make_tree(const std::string &root)
{
	for (const char *d : {"init.scope", "system.slice/cron.service", "system.slice/ssh.service",
			      "system.slice/ssh.socket", "system.slice/dup.service", "user.slice/user-1000.slice/user@1000.service/app.slice/dup.service",
			      "user.slice/user-1000.slice/session-3.scope", "user.slice/user-1000.slice/user@1000.service/app.slice/player.service",
			      "machine.slice/both.service", "machine.slice/both.scope"})
		fs::create_directories(root + "/" + d);
	fs::create_directories(root + "/system.slice/docker-" + ID_A + ".scope");
	fs::create_directories(root + "/system.slice/docker-" + ID_B + ".scope");
	fs::create_directories(root + "/docker/" + ID_C);
	fs::create_directories(root + "/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + ID_D + ".scope");
	fs::create_directories(root + "/machine.slice/libpod-" + ID_E + ".scope/container");
	fs::create_directories(root + "/machine.slice/libpod-conmon-" + ID_E + ".scope");
}

} // namespace

TEST_CASE("cgroup: the v2 mount is read from mountinfo, hybrid or unified, with escapes")
{
	t::temp_dir d;
	t::write_file(d.file("hybrid"),
		      "25 30 0:22 / /sys rw,nosuid - sysfs sysfs rw\n"
		      "35 25 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs ro,mode=755\n"
		      "36 35 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
		      "37 35 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
	auto m = cg::find_v2_mount(d.file("hybrid"));
	REQUIRE(m);
	CHECK(m->path == "/sys/fs/cgroup/unified");
	CHECK(m->root == "/");

	t::write_file(d.file("unified"), "40 30 0:27 /inner /mnt/cg\\040dir rw - cgroup2 cgroup2 rw\n"
					 "41 30 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	m = cg::find_v2_mount(d.file("unified"));
	REQUIRE(m);
	CHECK(m->path == "/sys/fs/cgroup"); // the one that shows the whole hierarchy wins

	t::write_file(d.file("inner"), "40 30 0:27 /inner /mnt/cg\\040dir rw - cgroup2 cgroup2 rw\n");
	m = cg::find_v2_mount(d.file("inner"));
	REQUIRE(m);
	CHECK(m->path == "/mnt/cg dir");
	CHECK(m->root == "/inner");

	t::write_file(d.file("none"), "37 35 0:32 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n");
	CHECK(!cg::find_v2_mount(d.file("none")));
	auto r = cg::v2_mount(d.file("none"));
	REQUIRE(!r);
	CHECK(r.err().code == 2);
	CHECK_THAT(r.err().msg, Catch::Contains("no cgroup v2 hierarchy is mounted"));
}

TEST_CASE("cgroup: --unit finds a unit's cgroup with or without its suffix, and says when none or several match")
{
	t::temp_dir d;
	make_tree(d.path());
	auto r = cg::find_unit(d.path(), "cron");
	REQUIRE(r);
	CHECK(*r == d.path() + "/system.slice/cron.service");
	r = cg::find_unit(d.path(), "cron.service");
	REQUIRE(r);
	CHECK(*r == d.path() + "/system.slice/cron.service");
	r = cg::find_unit(d.path(), "session-3.scope");
	REQUIRE(r);
	CHECK(*r == d.path() + "/user.slice/user-1000.slice/session-3.scope");
	r = cg::find_unit(d.path(), "player"); // a user manager's unit
	REQUIRE(r);
	CHECK(*r == d.path() + "/user.slice/user-1000.slice/user@1000.service/app.slice/player.service");
	r = cg::find_unit(d.path(), "user@1000.service");
	REQUIRE(r);
	CHECK(*r == d.path() + "/user.slice/user-1000.slice/user@1000.service");
	r = cg::find_unit(d.path(), "ssh"); // ssh.socket has no cgroup suffix of its own: only the service
	REQUIRE(r);
	CHECK(*r == d.path() + "/system.slice/ssh.service");

	r = cg::find_unit(d.path(), "dup"); // a system and a user unit of the same name
	REQUIRE(!r);
	CHECK(r.err().code == 2);
	CHECK_THAT(r.err().msg, Catch::Contains("2 units match") && Catch::Contains("/system.slice/dup.service") &&
					Catch::Contains("/user.slice/user-1000.slice/user@1000.service/app.slice/dup.service"));
	r = cg::find_unit(d.path(), "both"); // both.service and both.scope
	REQUIRE(!r);
	CHECK_THAT(r.err().msg, Catch::Contains("2 units match"));
	r = cg::find_unit(d.path(), "both.scope");
	REQUIRE(r);
	CHECK(*r == d.path() + "/machine.slice/both.scope");

	r = cg::find_unit(d.path(), "absent");
	REQUIRE(!r);
	CHECK(r.err().code == 2);
	CHECK_THAT(r.err().msg, Catch::Contains("no cgroup of a unit named absent.service, .scope or .slice"));
	r = cg::find_unit(d.path(), "a/b");
	REQUIRE(!r);
	CHECK_THAT(r.err().msg, Catch::Contains("expected a systemd unit name"));
}

TEST_CASE("cgroup: --container finds docker, containerd and podman cgroups by id prefix")
{
	t::temp_dir d;
	make_tree(d.path());
	auto r = cg::find_container(d.path(), ID_A.substr(0, 12));
	REQUIRE(r);
	CHECK(*r == d.path() + "/system.slice/docker-" + ID_A + ".scope");
	r = cg::find_container(d.path(), ID_A); // the whole id
	REQUIRE(r);
	CHECK(*r == d.path() + "/system.slice/docker-" + ID_A + ".scope");
	r = cg::find_container(d.path(), "C0FFEE"); // docker's cgroupfs layout, upper case given
	REQUIRE(r);
	CHECK(*r == d.path() + "/docker/" + ID_C);
	r = cg::find_container(d.path(), "d00d");
	REQUIRE(r);
	CHECK(*r == d.path() + "/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + ID_D + ".scope");
	r = cg::find_container(d.path(), "e0e0"); // the container's scope, not its monitor's
	REQUIRE(r);
	CHECK(*r == d.path() + "/machine.slice/libpod-" + ID_E + ".scope");

	r = cg::find_container(d.path(), "3f2"); // ID_A and ID_B
	REQUIRE(!r);
	CHECK(r.err().code == 2);
	CHECK_THAT(r.err().msg, Catch::Contains("2 containers match") && Catch::Contains(ID_A.substr(0, 12)) &&
					Catch::Contains(ID_B.substr(0, 12)));
	r = cg::find_container(d.path(), "abcdef");
	REQUIRE(!r);
	CHECK_THAT(r.err().msg, Catch::Contains("no container cgroup whose id starts with abcdef"));
	r = cg::find_container(d.path(), "xyz");
	REQUIRE(!r);
	CHECK_THAT(r.err().msg, Catch::Contains("expected a container id"));
}

TEST_CASE("cgroup: a process's v2 cgroup from /proc/PID/cgroup, and its directory under the mount")
{
	t::temp_dir d;
	fs::create_directories(d.file("proc/42"));
	t::write_file(d.file("proc/42/cgroup"), "12:cpu,cpuacct:/system.slice/cron.service\n"
						"1:name=systemd:/system.slice/cron.service\n"
						"0::/system.slice/cron.service\n");
	auto rel = cg::pid_cgroup(42, d.file("proc"));
	REQUIRE(rel);
	CHECK(*rel == "/system.slice/cron.service");
	CHECK(cg::pid_cgroup_dir(42, {"/sys/fs/cgroup/unified", "/"}, d.file("proc")) ==
	      std::optional<std::string>("/sys/fs/cgroup/unified/system.slice/cron.service"));
	CHECK(cg::pid_cgroup_dir(42, {"/mnt/sys", "/system.slice"}, d.file("proc")) ==
	      std::optional<std::string>("/mnt/sys/cron.service"));
	CHECK(!cg::pid_cgroup_dir(42, {"/mnt/u", "/user.slice"}, d.file("proc")));
	CHECK(!cg::pid_cgroup(43, d.file("proc")));
}

TEST_CASE("cgroup names: a record without an id is named from /proc while it is the same process, then remembered")
{
	t::temp_dir d;
	fs::create_directories(d.file("proc/42"));
	t::write_file(d.file("proc/42/cgroup"), "1:name=systemd:/x\n0::/system.slice/cron.service\n");
	// pid (comm) state, then fields 4..21, then starttime (field 22) = 500 clock ticks
	std::string stat = "42 (a (b) c) S";
	for (int i = 4; i <= 21; i++)
		stat += " 0";
	t::write_file(d.file("proc/42/stat"), stat + " 500 0 0\n");
	const uint64_t tick = 1000000000ULL / static_cast<uint64_t>(sysconf(_SC_CLK_TCK));
	{
		cg::names n(std::nullopt, d.file("proc"));
		// another process that had pid 42 (started 10 s later): not named from this /proc entry
		CHECK(n.of_record(42, 500 * tick + 10000000000ULL, 0) == nullptr);
	}
	cg::names n(std::nullopt, d.file("proc"));
	const char *p = n.of_record(42, 500 * tick, 0);
	REQUIRE(p != nullptr);
	CHECK(std::string(p) == "/system.slice/cron.service");
	CHECK(n.counts().from_proc == 1);
	// gone from /proc: still named, from what was read while it lived
	fs::remove_all(d.file("proc/42"));
	p = n.of_record(42, 500 * tick, 0);
	REQUIRE(p != nullptr);
	CHECK(std::string(p) == "/system.slice/cron.service");
	CHECK(n.of_record(43, 1, 0) == nullptr);
	CHECK(n.of_record(0, 0, 0) == nullptr); // about no process
	CHECK(n.counts().from_proc == 1);
}

TEST_CASE("cgroup names: a cgroup id is named by its path on the v2 hierarchy; a removed one by none")
{
	REQUIRE_ROOT_OR_SKIP(); // making a cgroup needs root
	auto m = cg::find_v2_mount();
	if (!m || m->root != "/")
		SKIP_TEST("no cgroup v2 mount of the whole hierarchy on this machine");
	const std::string name = "procimage-unit-" + std::to_string(getpid());
	const std::string dir = m->path + "/" + name;
	REQUIRE(mkdir(dir.c_str(), 0755) == 0);
	auto id = cg::cgroup_id(dir);
	auto root_id = cg::cgroup_id(m->path);
	REQUIRE(id);
	REQUIRE(root_id);
	{
		cg::names n(m);
		const char *p = n.of_id(*id);
		REQUIRE(p != nullptr);
		CHECK(std::string(p) == "/" + name);
		p = n.of_id(*root_id);
		REQUIRE(p != nullptr);
		CHECK(std::string(p) == "/");
		CHECK(n.counts().by_walk >= 2); // one walk named both
		// a record with the id names it, and the process is remembered there
		p = n.of_record(4242, 7, *id);
		REQUIRE(p != nullptr);
		CHECK(std::string(p) == "/" + name);
		p = n.of_record(4242, 7, 0);
		REQUIRE(p != nullptr);
		CHECK(std::string(p) == "/" + name);
		// the part of the hierarchy a mount of this cgroup shows is not the whole
		CHECK(cg::partial_view(cg::mount{dir, "/" + name}));
	}
	REQUIRE(rmdir(dir.c_str()) == 0);
	cg::names fresh(m);
	CHECK(fresh.of_id(*id) == nullptr);
	CHECK(fresh.counts().unknown == 1);
}

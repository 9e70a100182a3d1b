// SPDX-License-Identifier: Apache-2.0
// core/cgroup: the v2 mount from a mountinfo file, systemd units and containers found in a fake
// cgroup tree, a process's v2 cgroup from a fake /proc.
#include "cgroup.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <filesystem>

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
